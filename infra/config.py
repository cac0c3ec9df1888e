"""Typed, validated stack configuration.

``load()`` turns the ``vmkube:`` keys of a stack into frozen spec objects, or
raises one ConfigError that lists every problem with its key. Nothing here
touches a hypervisor, a node or Pulumi: the Pulumi layer hands in the raw
values, so the same rules run in unit tests, in preview and in ``up``.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from cryptography.exceptions import UnsupportedAlgorithm

from .binaries import PLACEHOLDERS, placeholders
from .errors import ConfigError
from .fields import DNS_LABEL, Fields, Problems
from .sshkeys import public_from_private

NAMESPACE = "vmkube"
HYPERVISORS = ("libvirt", "vsphere")
TOP_LEVEL_KEYS = ("name", "hypervisor", "libvirt", "vsphere", "ssh", "kubernetes",
                  "controlPlane", "workerPools", "workloads")
# A workloads stack deploys apps onto the cluster of another stack and holds nothing else.
APPS_STACK_KEYS = ("clusterStack", "workloads")
_STACK_NAME = re.compile(r"^([A-Za-z0-9_.-]+/){0,2}[A-Za-z0-9_.-]+$")
# Per-node pod ranges are carved from the pod CIDR in blocks of this size.
NODE_POD_PREFIX = 24
CONTROL_PLANE_MIN_MEMORY_MB = 1536
WORKER_MIN_MEMORY_MB = 1024
MIN_DISK_GB = 4
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
KUBE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler",
                 "kubelet", "kube-proxy", "kubectl", "etcd", "etcdctl")

_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_UNIX_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_HOST_KEY = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|ssh-rsa) [A-Za-z0-9+/=]+$")
_THUMBPRINT = re.compile(r"^([0-9A-Fa-f]{2}:){19,31}[0-9A-Fa-f]{2}$")
_ENDPOINT = re.compile(r"^$|^(\d{1,3}\.){3}\d{1,3}$|^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_LABEL_NAME = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")


class Secret:
    """A value that must never reach a log, a repr or plaintext state."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(****)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class LibvirtSpec:
    uri: str = "qemu:///system"
    network: str = "default"
    storage_pool: str = "default"
    base_image: str = ""  # empty: the image `make image` builds
    domain_type: str = "qemu"


@dataclass(frozen=True)
class VsphereSpec:
    server: str
    user: str
    password: Secret
    datacenter: str
    datastore: str
    network: str
    template: str
    cluster: str = ""
    resource_pool: str = ""
    folder: str = ""
    linked_clone: bool = False
    ca_file: str = ""
    thumbprint: str = ""
    insecure: bool = False


@dataclass(frozen=True)
class BastionSpec:
    host: str
    host_key: str
    user: str
    port: int = 22


@dataclass(frozen=True)
class SshSpec:
    user: str = "vmkube"
    port: int = 22
    private_key: Secret | None = None  # None: vmkube generates one per stack
    bastion: BastionSpec | None = None
    connect_timeout: int = 300  # seconds a node may take to accept SSH (booting VMs are slow)


@dataclass(frozen=True)
class BinariesSpec:
    url: str = ""  # a URL template on a mirror: {version}, {name}, {arch} (infra/binaries.py)
    sha256: Mapping[str, str] = field(default_factory=dict)
    dir: str = ""  # a local directory uploaded to the nodes (air-gapped)

    @property
    def source(self) -> str:
        if self.url:
            return "url"
        if self.dir:
            return "dir"
        return "toolchain"  # the binaries `make toolchain` builds


@dataclass(frozen=True)
class KubernetesSpec:
    install: bool = True  # False: provision the VMs only
    version: str = "1.34.4"
    pod_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.244.0.0/16")
    service_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.96.0.0/12")
    binaries: BinariesSpec = field(default_factory=BinariesSpec)


@dataclass(frozen=True)
class MachineSpec:
    cpus: int
    memory_mb: int
    disk_gb: int


@dataclass(frozen=True)
class ControlPlaneSpec:
    count: int = 1
    machine: MachineSpec = MachineSpec(cpus=2, memory_mb=2048, disk_gb=20)
    endpoint: str = ""  # a load balancer or VIP in front of the API servers; "" = the first control plane


@dataclass(frozen=True)
class WorkerPoolSpec:
    name: str
    count: int
    machine: MachineSpec
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorkloadSpec:
    """Per-environment overrides for one app under workloads/."""
    app: str
    replicas: int | None = None
    image: str = ""
    tag: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    resources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeSpec:
    name: str
    role: str  # "control-plane" or "worker"
    pool: str
    machine: MachineSpec
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    hypervisor: str
    ssh: SshSpec
    kubernetes: KubernetesSpec
    control_plane: ControlPlaneSpec
    worker_pools: tuple[WorkerPoolSpec, ...]
    workloads: tuple[WorkloadSpec, ...]
    libvirt: LibvirtSpec | None = None
    vsphere: VsphereSpec | None = None

    def nodes(self) -> list[NodeSpec]:
        """Every node the cluster should have, control planes first."""
        out = [NodeSpec(name=f"{self.name}-cp-{i}", role="control-plane", pool="control-plane",
                        machine=self.control_plane.machine)
               for i in range(1, self.control_plane.count + 1)]
        for pool in self.worker_pools:
            out += [NodeSpec(name=f"{self.name}-{pool.name}-{i}", role="worker", pool=pool.name,
                             machine=pool.machine, labels=pool.labels, taints=pool.taints)
                    for i in range(1, pool.count + 1)]
        return out


@dataclass(frozen=True)
class AppsStackSpec:
    """A stack holding only apps, for the cluster another stack made (StackReference)."""
    cluster_stack: str  # "stack", "project/stack" or "organization/project/stack"
    workloads: tuple[WorkloadSpec, ...]


# -- loading ----------------------------------------------------------------

def load_apps_stack(raw: Mapping[str, Any], *, apps: Iterable[str] | None = None) -> AppsStackSpec:
    """Validates a workloads stack: ``clusterStack`` and ``workloads``, nothing else."""
    problems = Problems()
    top = Fields(dict(raw), NAMESPACE, problems, sep=":")
    cluster_stack = top.string("clusterStack", pattern=_STACK_NAME,
                               rule="must name a stack: stack, project/stack or organization/project/stack")
    workloads = _workloads(top, apps)
    for key in sorted(set(raw) - set(APPS_STACK_KEYS)):
        top.fail(key, "not used by a workloads stack (vmkube:clusterStack is set): the cluster stack holds it")
        top.seen(key)
    top.done()
    if problems.lines:
        raise ConfigError(problems.lines)
    return AppsStackSpec(cluster_stack=cluster_stack, workloads=tuple(workloads))


def load(raw: Mapping[str, Any], *, stack: str, secret_keys: Iterable[str] = (),
         apps: Iterable[str] | None = None) -> ClusterSpec:
    """Validates the ``vmkube:`` keys of one stack.

    ``raw`` maps keys without the namespace to their decoded values;
    ``secret_keys`` names the top-level keys Pulumi holds as secrets;
    ``apps`` lists the apps under workloads/ (None: not checked).
    """
    problems = Problems()
    top = Fields(dict(raw), NAMESPACE, problems, sep=":")
    secrets = set(secret_keys)

    name = top.string("name", _default_name(stack), pattern=DNS_LABEL,
                      rule="must be a DNS label: lower-case letters, digits and '-', at most 63")
    hypervisor = top.string("hypervisor", choices=HYPERVISORS)
    libvirt = _libvirt(top, hypervisor)
    vsphere = _vsphere(top, hypervisor, secrets)
    ssh = _ssh(top, secrets)
    kubernetes = _kubernetes(top)
    control_plane = _control_plane(top)
    pools = _worker_pools(top)
    workloads = _workloads(top, apps)
    top.done()

    if name and kubernetes and control_plane and pools is not None:
        _check_sizes(problems, name, kubernetes, control_plane, pools)
    if workloads and kubernetes and not kubernetes.install:
        problems.add(f"{NAMESPACE}:workloads", "apps need Kubernetes, but vmkube:kubernetes.install is false")
    if problems.lines:
        raise ConfigError(problems.lines)
    return ClusterSpec(name=name, hypervisor=hypervisor, ssh=ssh, kubernetes=kubernetes,
                       control_plane=control_plane, worker_pools=tuple(pools),
                       workloads=tuple(workloads), libvirt=libvirt, vsphere=vsphere)


def _default_name(stack: str) -> str:
    cleaned = re.sub(r"[^a-z0-9-]+", "-", stack.lower()).strip("-")
    return cleaned[:40] or "vmkube"


def _section_for(top: Fields, section: str, hypervisor: str | None) -> Fields | None:
    """The hypervisor's own section; the other one is a mistake, not a spare."""
    fields = top.obj(section, required=False)
    if hypervisor == section:
        return fields or Fields({}, top.key(section), top.problems)
    if fields is not None and hypervisor is not None:
        top.fail(section, f"is set but vmkube:hypervisor is {hypervisor!r}; remove it or switch hypervisor")
    return None


def _libvirt(top: Fields, hypervisor: str | None) -> LibvirtSpec | None:
    f = _section_for(top, "libvirt", hypervisor)
    if f is None:
        return None
    d = LibvirtSpec()
    spec = LibvirtSpec(
        uri=f.string("uri", d.uri),
        network=f.string("network", d.network),
        storage_pool=f.string("storagePool", d.storage_pool),
        base_image=f.string("baseImage", d.base_image),
        domain_type=f.string("domainType", d.domain_type, choices=("qemu", "kvm")),
    )
    f.done()
    return spec


def _require_secret(f: Fields, name: str, top_key: str, secrets: set[str]) -> Secret | None:
    value = f.string(name, None)
    if value is None:
        return None
    if top_key not in secrets:
        f.fail(name, "must be set as a secret: "
                     f"pulumi config set --secret --path '{f.key(name)}' <value>")
        return None
    return Secret(value)


def _vsphere(top: Fields, hypervisor: str | None, secrets: set[str]) -> VsphereSpec | None:
    f = _section_for(top, "vsphere", hypervisor)
    if f is None:
        return None
    server = f.string("server")
    user = f.string("user")
    password = _require_secret(f, "password", "vsphere", secrets)
    if password is None and not f.has("password"):
        f.fail("password", "is required (set it with pulumi config set --secret --path "
                           f"'{f.key('password')}' <value>)")
    values = dict(
        datacenter=f.string("datacenter"),
        datastore=f.string("datastore"),
        network=f.string("network"),
        template=f.string("template"),
        cluster=f.string("cluster", ""),
        resource_pool=f.string("resourcePool", ""),
        folder=f.string("folder", ""),
        linked_clone=f.boolean("linkedClone", False),
        ca_file=f.string("caFile", ""),
        thumbprint=f.string("thumbprint", "", pattern=_THUMBPRINT,
                            rule="must be a SHA-1 or SHA-256 fingerprint like AB:CD:…"),
        insecure=f.boolean("insecure", False),
    )
    if not (f.has("cluster") or f.has("resourcePool")):
        f.fail("cluster", "is required: set cluster or resourcePool (where the VMs run)")
    if values["insecure"] and (values["ca_file"] or values["thumbprint"]):
        f.fail("insecure", "true turns TLS verification off; remove caFile/thumbprint or set insecure to false")
    if values["ca_file"] and values["thumbprint"]:
        f.fail("thumbprint", "set caFile or thumbprint, not both")
    f.done()
    if None in (server, user, password, *values.values()):
        return None
    return VsphereSpec(server=server, user=user, password=password, **values)


def _ssh(top: Fields, secrets: set[str]) -> SshSpec | None:
    f = top.obj("ssh") or Fields({}, top.key("ssh"), top.problems)
    d = SshSpec()
    user = f.string("user", d.user, pattern=_UNIX_USER, rule="must be a Unix user name")
    port = f.integer("port", d.port, minimum=1, maximum=65535)
    key = _require_secret(f, "privateKey", "ssh", secrets)
    timeout = f.integer("connectTimeoutSeconds", d.connect_timeout, minimum=5, maximum=3600)
    if key is not None:
        try:
            public_from_private(key.reveal())
        except (ValueError, TypeError, UnsupportedAlgorithm):
            # The library's message could quote key material; say only what kind of problem it is.
            f.fail("privateKey", "is not an unencrypted PEM or OpenSSH private key")
            key = None
    bastion = None
    b = f.obj("bastion")
    if b is not None:
        bastion = BastionSpec(
            host=b.string("host"),
            host_key=b.string("hostKey", pattern=_HOST_KEY,
                              rule="must be the bastion's public host key, '<type> <base64>' as in known_hosts"),
            user=b.string("user", user or d.user, pattern=_UNIX_USER, rule="must be a Unix user name"),
            port=b.integer("port", 22, minimum=1, maximum=65535),
        )
        if bastion.host_key and not _valid_base64(bastion.host_key.split(" ", 1)[1]):
            b.fail("hostKey", "its key part is not valid base64")
        b.done()
    f.done()
    return SshSpec(user=user, port=port, private_key=key, bastion=bastion, connect_timeout=timeout or d.connect_timeout)


def _valid_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except ValueError:
        return False
    return True


def _kubernetes(top: Fields) -> KubernetesSpec | None:
    f = top.obj("kubernetes") or Fields({}, top.key("kubernetes"), top.problems)
    d = KubernetesSpec()
    install = f.boolean("install", d.install)
    version = f.string("version", d.version, pattern=_VERSION, rule="must be a release like 1.34.4")
    if version and not version.startswith("1."):
        f.fail("version", f"must be a Kubernetes 1.x release (got {version!r})")
    pod = f.network("podCidr", str(d.pod_cidr), min_prefix=8, max_prefix=NODE_POD_PREFIX - 1)
    svc = f.network("serviceCidr", str(d.service_cidr), min_prefix=12, max_prefix=28)
    if pod is not None and svc is not None and pod.overlaps(svc):
        f.fail("serviceCidr", f"overlaps vmkube:kubernetes.podCidr ({svc} and {pod})")
    binaries = _binaries(f)
    f.done()
    if None in (install, version, pod, svc, binaries):
        return None
    return KubernetesSpec(install=install, version=version, pod_cidr=pod, service_cidr=svc, binaries=binaries)


def _binaries(parent: Fields) -> BinariesSpec | None:
    f = parent.obj("binaries")
    if f is None:
        return BinariesSpec()
    url = f.string("url", "")
    sha = f.mapping("sha256", lambda k, v: (
        f"unknown binary; expected one of {', '.join(KUBE_BINARIES)}" if k not in KUBE_BINARIES
        else None if isinstance(v, str) and _SHA256.match(v)
        else "must be a sha256 hex digest (64 lower-case hex digits)"))
    directory = f.string("dir", "")
    if url and directory:
        f.fail("dir", "set url (a mirror) or dir (a local directory), not both")
    if url and not re.match(r"^https?://", url):
        f.fail("url", f"must be an http(s) URL (got {url!r})")
    if url:
        _url_template(f, url)
        missing = [b for b in KUBE_BINARIES if b not in (f.raw.get("sha256") or {})]
        if missing:
            f.fail("sha256", f"needs a digest for every binary fetched from url; missing: {', '.join(missing)}")
    elif f.has("sha256"):
        f.fail("sha256", "only applies with url")
    f.done()
    return BinariesSpec(url=url or "", sha256=dict(sha), dir=directory or "")


def _url_template(f: Fields, url: str) -> None:
    try:
        unknown = [p for p in placeholders(url) if p not in PLACEHOLDERS]
    except ValueError as exc:
        f.fail("url", f"is not a valid template ({exc}); placeholders look like {{version}}")
        return
    if unknown:
        f.fail("url", f"unknown placeholder {{{unknown[0]}}}; use {', '.join('{%s}' % p for p in PLACEHOLDERS)}")


def _machine(f: Fields, default: MachineSpec, min_memory: int) -> MachineSpec:
    return MachineSpec(
        cpus=f.integer("cpus", default.cpus, minimum=1, maximum=128),
        memory_mb=f.integer("memoryMb", default.memory_mb, minimum=min_memory, maximum=1024 * 1024),
        disk_gb=f.integer("diskGb", default.disk_gb, minimum=MIN_DISK_GB, maximum=64 * 1024),
    )


def _control_plane(top: Fields) -> ControlPlaneSpec | None:
    f = top.obj("controlPlane") or Fields({}, top.key("controlPlane"), top.problems)
    d = ControlPlaneSpec()
    # Stacked etcd needs a majority that survives one loss: 1 or 3, never 2.
    count = f.integer("count", d.count, allowed=(1, 3))
    machine = _machine(f, d.machine, CONTROL_PLANE_MIN_MEMORY_MB)
    endpoint = f.string("endpoint", "", pattern=_ENDPOINT,
                        rule="must be a host name or IPv4 address (the API port is 6443)")
    f.done()
    if count is None or endpoint is None or None in vars(machine).values():
        return None
    return ControlPlaneSpec(count=count, machine=machine, endpoint=endpoint)


def _labels(key: str, value: Any) -> str | None:
    if not _LABEL_NAME.match(key) or len(key) > 317:
        return "is not a valid Kubernetes label name"
    if not isinstance(value, str) or not _LABEL_VALUE.match(value):
        return "must be a Kubernetes label value: up to 63 letters, digits, '-', '_' or '.'"
    return None


def _taint(text: str, _path: str) -> str | None:
    head, sep, effect = text.rpartition(":")
    if not sep or effect not in TAINT_EFFECTS:
        return f"must look like key=value:Effect with Effect one of {', '.join(TAINT_EFFECTS)} (got {text!r})"
    key, _, value = head.partition("=")
    if _labels(key, value) is not None:
        return f"has an invalid key or value (got {text!r})"
    return None


def _worker_pools(top: Fields) -> list[WorkerPoolSpec] | None:
    items = top.items("workerPools")
    default = MachineSpec(cpus=2, memory_mb=2048, disk_gb=20)
    pools: list[WorkerPoolSpec] = []
    seen: dict[str, int] = {}
    ok = True
    for i, f in enumerate(items):
        name = f.string("name", pattern=DNS_LABEL, rule="must be a DNS label: lower-case letters, digits and '-'")
        if name in ("cp",):
            f.fail("name", "'cp' is reserved for control-plane nodes")
            name = None
        if name is not None and name in seen:
            f.fail("name", f"duplicate pool name {name!r} (also workerPools[{seen[name]}])")
            name = None
        if name is not None:
            seen[name] = i
        count = f.integer("count", 1, minimum=0, maximum=500)
        machine = _machine(f, default, WORKER_MIN_MEMORY_MB)
        labels = f.mapping("labels", _labels)
        taints = f.strings("taints", _taint)
        f.done()
        if name is None or count is None or None in vars(machine).values():
            ok = False
            continue
        pools.append(WorkerPoolSpec(name=name, count=count, machine=machine,
                                    labels=labels, taints=tuple(taints)))
    return pools if ok else None


_WORKLOAD_KEYS_RESOURCES = ("requests", "limits")


def _workloads(top: Fields, apps: Iterable[str] | None) -> list[WorkloadSpec]:
    f = top.obj("workloads")
    if f is None:
        return []
    known = sorted(apps) if apps is not None else None
    out: list[WorkloadSpec] = []
    for app in sorted(f.raw):
        if known is not None and app not in known:
            f.fail(app, f"unknown app; workloads/ has: {', '.join(known) or 'none'}")
            f.seen(app)
            continue
        # `app: {}` or a bare `app:` both mean "run it with the manifest's values".
        w = f.obj(app) or Fields({}, f.key(app), f.problems)
        spec = WorkloadSpec(
            app=app,
            replicas=w.integer("replicas", None, minimum=0, maximum=1000),
            image=w.string("image", ""),
            tag=w.string("tag", "", pattern=re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"),
                         rule="must be an image tag"),
            labels=w.mapping("labels", _labels),
            resources=_resources(w),
        )
        w.done()
        out.append(spec)
    f.done()
    return out


def _resources(w: Fields) -> dict[str, dict[str, str]]:
    r = w.obj("resources")
    if r is None:
        return {}
    out: dict[str, dict[str, str]] = {}
    for kind in _WORKLOAD_KEYS_RESOURCES:
        values = r.mapping(kind, lambda k, v: (
            "must be cpu or memory" if k not in ("cpu", "memory")
            else None if isinstance(v, (str, int)) and _QUANTITY.match(str(v))
            else "must be a Kubernetes quantity like 250m or 128Mi"))
        if values:
            out[kind] = {k: str(v) for k, v in values.items()}
    r.done()
    return out


def _check_sizes(problems: Problems, name: str, kubernetes: KubernetesSpec,
                 control_plane: ControlPlaneSpec, pools: list[WorkerPoolSpec]) -> None:
    """Rules that span several keys: name lengths and pod address space."""
    total = control_plane.count + sum(p.count for p in pools)
    capacity = 2 ** (NODE_POD_PREFIX - kubernetes.pod_cidr.prefixlen)
    if total > capacity:
        problems.add(f"{NAMESPACE}:kubernetes.podCidr",
                     f"{kubernetes.pod_cidr} holds {capacity} node ranges of /{NODE_POD_PREFIX} "
                     f"but the cluster has {total} nodes")
    for i, pool in enumerate(pools):
        longest = f"{name}-{pool.name}-{max(pool.count, 1)}"
        if len(longest) > 63:
            problems.add(f"{NAMESPACE}:workerPools[{i}].name",
                         f"node name {longest!r} is longer than 63 characters; shorten the pool or vmkube:name")
