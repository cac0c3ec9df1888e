"""The component's arguments, checked by the same rules as a stack's config.

``vmkube.Cluster(name, ClusterArgs(...))`` takes the config's own typed specs
(LibvirtSpec or VsphereSpec, ControlPlaneSpec, WorkerPoolSpec, KubernetesSpec,
SshSpec). They are turned into the raw form a stack's ``vmkube:`` keys have and
validated by ``config.load``, so both ways in obey one set of rules; a problem is
then reported under the Args field a component user wrote
(``ClusterArgs.worker_pools[0].machine.memory_mb``), not under a stack key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from vmkube import config
from vmkube.config import (ClusterSpec, ControlPlaneSpec, EtcdSpec, KubernetesSpec, LibvirtSpec, NetworkSpec, PkiSpec,
                           SshSpec, VsphereSpec, WorkerPoolSpec)
from vmkube.errors import ConfigError


@dataclass(frozen=True)
class ClusterArgs:
    """A cluster's shape: the Python spelling of the stack config (README, "Configuration")."""
    hypervisor: LibvirtSpec | VsphereSpec
    control_plane: ControlPlaneSpec = field(default_factory=ControlPlaneSpec)
    worker_pools: Sequence[WorkerPoolSpec] = ()
    kubernetes: KubernetesSpec = field(default_factory=KubernetesSpec)
    ssh: SshSpec = field(default_factory=SshSpec)
    network: NetworkSpec = field(default_factory=NetworkSpec)
    etcd: EtcdSpec = field(default_factory=EtcdSpec)
    pki: PkiSpec = field(default_factory=PkiSpec)

    @classmethod
    def from_spec(cls, spec: ClusterSpec) -> "ClusterArgs":
        """The arguments a validated stack config stands for (the repo's own program)."""
        return cls(hypervisor=spec.libvirt or spec.vsphere, control_plane=spec.control_plane,
                   worker_pools=tuple(spec.worker_pools), kubernetes=spec.kubernetes, ssh=spec.ssh,
                   network=spec.network, etcd=spec.etcd, pki=spec.pki)


def _machine(spec: Any) -> dict[str, Any]:
    m = spec.machine
    return {"cpus": m.cpus, "memoryMb": m.memory_mb, "diskGb": m.disk_gb}


def raw_config(name: str, args: ClusterArgs) -> tuple[dict[str, Any], set[str]]:
    """The stack-config form of the arguments, and which of its sections hold secrets."""
    hv = args.hypervisor
    raw: dict[str, Any] = {"name": name}
    secret = set()
    if isinstance(hv, LibvirtSpec):
        raw.update(hypervisor="libvirt", libvirt={"uri": hv.uri, "network": hv.network,
                                                  "storagePool": hv.storage_pool, "baseImage": hv.base_image,
                                                  "domainType": hv.domain_type})
    elif isinstance(hv, VsphereSpec):
        raw.update(hypervisor="vsphere", vsphere={
            "server": hv.server, "user": hv.user, "password": _secret(hv.password), "datacenter": hv.datacenter,
            "datastore": hv.datastore, "network": hv.network, "template": hv.template, "cluster": hv.cluster,
            "resourcePool": hv.resource_pool, "folder": hv.folder, "linkedClone": hv.linked_clone,
            "caFile": hv.ca_file, "thumbprint": hv.thumbprint, "insecure": hv.insecure,
            "storagePolicy": hv.storage_policy, "customAttributes": dict(hv.custom_attributes)})
        if isinstance(hv.password, config.Secret):
            secret.add("vsphere")
    else:
        raw["hypervisor"] = type(hv).__name__
    ssh = args.ssh
    raw["ssh"] = {"user": ssh.user, "port": ssh.port, "connectTimeoutSeconds": ssh.connect_timeout}
    if ssh.private_key is not None:
        raw["ssh"]["privateKey"] = _secret(ssh.private_key)
        if isinstance(ssh.private_key, config.Secret):
            secret.add("ssh")
    if ssh.bastion is not None:
        b = ssh.bastion
        raw["ssh"]["bastion"] = {"host": b.host, "hostKey": b.host_key, "user": b.user, "port": b.port}
    k = args.kubernetes
    raw["kubernetes"] = {"install": k.install, "version": k.version, "podCidr": str(k.pod_cidr),
                         "serviceCidr": str(k.service_cidr), "imageRepository": k.image_repository,
                         "preloadImages": k.preload_images,
                         "addons": {"corednsReplicas": k.addons.coredns_replicas,
                                    "metricsServer": k.addons.metrics_server,
                                    "networkPolicy": k.addons.network_policy}}
    if k.binaries.url or k.binaries.dir or k.binaries.sha256:
        raw["kubernetes"]["binaries"] = {key: value for key, value in (
            ("url", k.binaries.url), ("dir", k.binaries.dir), ("sha256", dict(k.binaries.sha256))) if value}
    net = args.network
    if net.mode != "dhcp":
        raw["network"] = {"mode": net.mode, "subnet": str(net.subnet) if net.subnet else None,
                          "gateway": net.gateway, "dnsServers": list(net.dns_servers),
                          "searchDomains": list(net.search_domains)}
    if args.etcd != EtcdSpec():
        raw["etcd"] = {"snapshots": {"keep": args.etcd.snapshots_keep}}
    if args.pki != PkiSpec():
        raw["pki"] = {"renewBeforeDays": args.pki.renew_before_days}
    cp = args.control_plane
    raw["controlPlane"] = {"count": cp.count, **_machine(cp), "endpoint": cp.endpoint or None,
                           "addresses": _ranges(cp.addresses)}
    raw["workerPools"] = [{"name": p.name, "count": p.count, **_machine(p), "labels": dict(p.labels),
                           "taints": list(p.taints), "antiAffinity": p.anti_affinity,
                           "addresses": _ranges(p.addresses)} for p in args.worker_pools]
    return _drop_none(raw), secret


def _ranges(ranges: Sequence[Any]) -> list[str] | None:
    return [str(r) for r in ranges] or None


def _secret(value: Any) -> Any:
    return value.reveal() if isinstance(value, config.Secret) else value


def _drop_none(value: Any) -> Any:
    """Unset fields are left out, as a stack leaves out keys it does not set."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None and v != ""}
    return value


# Stack keys whose Args field is spelled another way than camelCase to snake_case.
_RENAMES = (
    (r"^vmkube:name", "Cluster name"),
    (r"^vmkube:(libvirt|vsphere)\b", "ClusterArgs.hypervisor"),
    (r"^vmkube:hypervisor\b", "ClusterArgs.hypervisor"),
    (r"^(vmkube:(?:controlPlane|workerPools\[\d+\]))\.(cpus|memoryMb|diskGb)\b", r"\1.machine.\2"),
    (r"\.connectTimeoutSeconds\b", ".connectTimeout"),
    (r"^vmkube:", "ClusterArgs."),
)


def args_key(key: str) -> str:
    """``vmkube:workerPools[0].memoryMb`` -> ``ClusterArgs.worker_pools[0].machine.memory_mb``."""
    for pattern, replacement in _RENAMES:
        key = re.sub(pattern, replacement, key)
    head, dot, fields_ = key.partition(".")
    return head + dot + re.sub(r"(?<=[a-z0-9])([A-Z])", lambda m: "_" + m.group(1).lower(), fields_)


def _in_args_terms(line: str) -> str:
    key, sep, message = line.partition(": ")
    message = re.sub(r"must be set as a secret: .*", "must be a vmkube.config.Secret: it is a secret", message)
    message = re.sub(r"vmkube:[A-Za-z0-9_.\[\]]+", lambda m: args_key(m.group(0)), message)
    return f"{args_key(key)}{sep}{message}"


def validated(name: str, args: ClusterArgs) -> ClusterSpec:
    """The cluster spec the arguments stand for; ConfigError naming Args fields otherwise."""
    raw, secret = raw_config(name, args)
    try:
        return config.load(raw, stack=name, secret_keys=secret)
    except ConfigError as exc:
        raise ConfigError([_in_args_terms(p) for p in exc.problems], what="cluster arguments") from None
