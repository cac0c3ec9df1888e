"""The cluster as Pulumi components: one Cluster, a NodePool per pool, and
under each NodePool the VmPool resource holding its VMs.

    import vmkube
    cluster = vmkube.Cluster("lab", vmkube.ClusterArgs(hypervisor=LibvirtSpec(), ...))
    pulumi.export("kubeconfig", cluster.kubeconfig)          # secret
    k8s.apps.v1.Deployment(..., opts=pulumi.ResourceOptions(provider=cluster.provider))
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional, Sequence

import pulumi

from vmkube import args as cluster_args
from vmkube.args import ClusterArgs
from vmkube.config import ClusterSpec, MachineSpec, NodeSpec
from vmkube.contracts import (BinarySource, Bastion, BootstrapInputs, NodeInput, PoolSpec, SshSettings,
                              StaticNetwork)
from vmkube.errors import ConfigError
from vmkube.roles import CONTROL_PLANE
from vmkube.sshkeys import public_from_private
from vmkube.vms import connect

from vmkube.stack.bootstrap import Bootstrap
from vmkube.stack.certificates import certificates_output, pki_policy
from vmkube.stack.keys import SshKey
from vmkube.stack.toolchain import addon_settings, binary_source, snapshot_policy
from vmkube.stack.vmpool import LeavingVms, VmPool


def node_output(node: NodeSpec) -> dict[str, Any]:
    return {"name": node.name, "role": node.role, "pool": node.pool,
            "cpus": node.machine.cpus, "memoryMb": node.machine.memory_mb,
            "diskGb": node.machine.disk_gb, "labels": dict(node.labels),
            "taints": list(node.taints)}


class NodePool(pulumi.ComponentResource):
    """The nodes of one role and size: the control plane, or one worker pool."""

    def __init__(self, name: str, nodes: list[NodeSpec], machine: MachineSpec, config_path: str,
                 spec: ClusterSpec, image: str, ssh_public_key: pulumi.Input[str],
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vmkube:index:NodePool", name, None, opts)
        planned = [node_output(n) for n in nodes]
        pool = PoolSpec(owner=f"vmkube/{pulumi.get_project()}/{pulumi.get_stack()}/{name}",
                        names=tuple(n.name for n in nodes), cpus=machine.cpus, memory_mb=machine.memory_mb,
                        disk_gb=machine.disk_gb, image=image, ssh_user=spec.ssh.user, ssh_public_key="",
                        config_path=config_path, hypervisor=connect.hypervisor_of(spec),
                        keep_leaving=spec.kubernetes.install,
                        anti_affinity=bool(nodes) and (nodes[0].role == CONTROL_PLANE or any(
                            p.anti_affinity for p in spec.worker_pools if p.name == nodes[0].pool)),
                        network=_static_network(spec), addresses=tuple(n.address for n in nodes)
                        if spec.network.static else ())
        self.vms = VmPool(f"{name}-vms", pool, ssh_public_key, opts=pulumi.ResourceOptions(parent=self))
        self.nodes = self.vms.vms.apply(lambda vms: _merge(planned, vms))
        self.host_public_keys = self.vms.hostPublicKeys
        self.register_outputs({"nodes": self.nodes})


def _static_network(spec: ClusterSpec) -> StaticNetwork | None:
    net = spec.network
    if not net.static or net.subnet is None:
        return None
    return StaticNetwork(prefix=net.subnet.prefixlen, gateway=net.gateway, dns_servers=net.dns_servers,
                         search_domains=net.search_domains)


def _merge(planned: list[dict[str, Any]], vms: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    seen = {vm["name"]: vm for vm in vms or []}
    return [{**node, **{k: seen.get(node["name"], {}).get(k, "") for k in ("ip", "mac", "power", "id")}}
            for node in planned]


def _with_status(nodes: list[dict[str, Any]], status: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    seen = {s["name"]: s for s in status or []}
    return [{**n, "ready": seen.get(n["name"], {}).get("ready", False),
             "kubeletVersion": seen.get(n["name"], {}).get("kubeletVersion", "")} for n in nodes]


class Cluster(pulumi.ComponentResource):
    """A Kubernetes cluster on VMs of one hypervisor.

    Outputs: ``nodes`` (name, role, pool, address, readiness of each node),
    ``kubeconfig`` (secret; None without Kubernetes), ``ssh_public_key``,
    ``host_public_keys`` (the pinned SSH host key of each node), ``certificates``
    (each certificate's name and end date; None without Kubernetes) and ``provider``,
    a Kubernetes provider for the cluster (created on first use).
    ``binaries`` overrides where node binaries come from (default: the stack's
    kubernetes.binaries, else the toolchain); ``apps`` names the apps of this
    repository's workloads/ whose images vmkube builds and preloads.
    """

    def __init__(self, name: str, args: ClusterArgs, opts: Optional[pulumi.ResourceOptions] = None, *,
                 binaries: BinarySource | None = None, apps: Sequence[str] = ()):
        super().__init__("vmkube:index:Cluster", name, None, opts)
        try:
            spec = cluster_args.validated(name, args)
            image = connect.image_for(spec)
            source = binaries if binaries is not None else binary_source(spec, tuple(apps))
        except ConfigError as exc:
            raise pulumi.RunError(exc.render()) from None
        self.spec = spec
        child = pulumi.ResourceOptions(parent=self)

        if spec.ssh.private_key is None:
            key = SshKey(f"{name}-ssh", comment=f"vmkube-{spec.name}", opts=child)
            self.ssh_public_key: pulumi.Output[str] = key.public_key
            # Secret in state already (additional_secret_outputs); marked here too so
            # that whatever reads it from the component keeps it secret.
            self.ssh_private_key: pulumi.Output[str] = pulumi.Output.secret(key.private_key)
        else:
            private = spec.ssh.private_key.reveal()
            self.ssh_public_key = pulumi.Output.from_input(public_from_private(private))
            self.ssh_private_key = pulumi.Output.secret(private)

        nodes = spec.nodes()
        pools = [NodePool(f"{name}-control-plane", [n for n in nodes if n.role == CONTROL_PLANE],
                          spec.control_plane.machine, "vmkube:controlPlane", spec, image, self.ssh_public_key,
                          child)]
        pools += [NodePool(f"{name}-{p.name}", [n for n in nodes if n.pool == p.name], p.machine,
                           f"vmkube:workerPools[{i}]", spec, image, self.ssh_public_key, child)
                  for i, p in enumerate(spec.worker_pools)]
        self.pools = pools
        self.nodes = pulumi.Output.all(*[p.nodes for p in pools]).apply(
            lambda groups: [n for group in groups for n in group])
        self.host_public_keys = pulumi.Output.all(*[p.host_public_keys for p in pools]).apply(
            lambda maps: {k: v for m in maps for k, v in (m or {}).items()})
        self.kubeconfig: pulumi.Output[str] | None = None
        self.certificates: pulumi.Output[dict[str, str]] | None = None
        self._provider: Any = None
        if spec.kubernetes.install:
            self.kubernetes = self._bootstrap(name, spec, source, nodes, pools)
            # Workers that left the config are drained by the bootstrap, then their VMs go.
            self.leaving = LeavingVms(f"{name}-leaving-vms", [p.vms for p in pools],
                                      pulumi.ResourceOptions(parent=self, depends_on=[self.kubernetes]))
            self.kubeconfig = pulumi.Output.secret(self.kubernetes.kubeconfig)
            self.certificates = certificates_output(self.kubernetes.pki, spec.name)
            self.nodes = pulumi.Output.all(self.nodes, self.kubernetes.nodeStatus).apply(
                lambda pair: _with_status(pair[0], pair[1]))
        self.register_outputs({"nodes": self.nodes, "sshPublicKey": self.ssh_public_key})

    @property
    def provider(self) -> Any:
        """A pulumi-kubernetes Provider for this cluster, for the apps of the program using it.

        ``cluster_identifier`` is the cluster's name, so a new kubeconfig (a renewed
        certificate, another address) updates the provider instead of replacing every
        object it manages."""
        if self.kubeconfig is None:
            raise AttributeError(f"cluster {self.spec.name}: kubernetes.install is false, so there is no API")
        if self._provider is None:
            import pulumi_kubernetes as k8s
            self._provider = k8s.Provider(f"{self.spec.name}-kubernetes", kubeconfig=self.kubeconfig,
                                          cluster_identifier=self.spec.name,
                                          opts=pulumi.ResourceOptions(parent=self))
        return self._provider

    def _bootstrap(self, name: str, spec: ClusterSpec, source: BinarySource, nodes: list[NodeSpec],
                   pools: list[NodePool]) -> Bootstrap:
        planned = {n.name: n for n in nodes}

        def node_inputs(values: list) -> list[dict[str, Any]]:
            vms = [vm for group in values[:len(pools)] for vm in (group or [])]
            keys = {k: v for m in values[len(pools):] for k, v in (m or {}).items()}
            return [NodeInput(name=vm["name"], role=planned[vm["name"]].role, ip=vm["ip"], host_key=keys[vm["name"]],
                              memory_mb=planned[vm["name"]].machine.memory_mb,
                              labels=dict(planned[vm["name"]].labels),
                              taints=tuple(planned[vm["name"]].taints)).to_props()
                    for vm in vms]

        b = spec.ssh.bastion
        ssh = SshSettings(user=spec.ssh.user, port=spec.ssh.port, private_key="",
                          connect_timeout=spec.ssh.connect_timeout,
                          bastion=Bastion(b.host, b.port, b.user, b.host_key) if b else None)
        inputs = BootstrapInputs(cluster=spec.name, version=spec.kubernetes.version,
                                 pod_cidr=str(spec.kubernetes.pod_cidr),
                                 service_cidr=str(spec.kubernetes.service_cidr), nodes=(), ssh=ssh,
                                 binaries=source, endpoint=spec.control_plane.endpoint,
                                 addons=addon_settings(spec), snapshots=snapshot_policy(spec, pulumi.get_stack()),
                                 pki_policy=pki_policy(spec))
        props = inputs.to_props()
        # What only the engine knows yet: the VMs' addresses and host keys, a generated SSH key.
        props["nodes"] = pulumi.Output.all(*[p.vms.vms for p in pools],
                                           *[p.vms.hostPublicKeys for p in pools]).apply(node_inputs)
        props["ssh"] = self.ssh_private_key.apply(lambda key: replace(ssh, private_key=key).to_props())
        return Bootstrap(f"{name}-kubernetes", props,
                         pulumi.ResourceOptions(parent=self, depends_on=[p.vms for p in pools]))
