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

from vmkube.addresses import AddressRange, capacity, parse_range, pool_addresses
from vmkube.binaries import PLACEHOLDERS, placeholders
from vmkube.errors import ConfigError
from vmkube.fields import DNS_LABEL, Fields, Problems
from vmkube.roles import CONTROL_PLANE, WORKER
from vmkube.versions import DEFAULT_REPOSITORY, PINS, minor
from vmkube.sshkeys import public_from_private
from vmkube.vms.tlspin import THUMBPRINT

NAMESPACE = "vmkube"
HYPERVISORS = ("libvirt", "vsphere")
TOP_LEVEL_KEYS = ("name", "hypervisor", "libvirt", "vsphere", "network", "ssh", "kubernetes",
                  "controlPlane", "workerPools", "workloads")
NETWORK_MODES = ("dhcp", "static")
# A workloads stack deploys apps onto the cluster of another stack and holds nothing else.
APPS_STACK_KEYS = ("clusterStack", "workloads")
_STACK_NAME = re.compile(r"^([A-Za-z0-9_.-]+/){0,2}[A-Za-z0-9_.-]+$")
# Per-node pod ranges are carved from the pod CIDR in blocks of this size.
NODE_POD_PREFIX = 24
CONTROL_PLANE_MIN_MEMORY_MB = 1536
WORKER_MIN_MEMORY_MB = 1024
MIN_DISK_GB = 4
SSH_CONNECT_TIMEOUT = 300  # seconds a node may take to accept SSH (booting VMs are slow)
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
KUBE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler",
                 "kubelet", "kube-proxy", "kubectl", "etcd", "etcdctl")

_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_UNIX_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_HOST_KEY = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|ssh-rsa) [A-Za-z0-9+/=]+$")
_ENDPOINT = re.compile(r"^$|^(\d{1,3}\.){3}\d{1,3}$|^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REPOSITORY = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:\d{1,5})?(/[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?){0,8}")
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
    storage_policy: str = ""  # a VM storage policy instead of a datastore ("" with a datastore)
    custom_attributes: Mapping[str, str] = field(default_factory=dict)  # set on every VM


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
    connect_timeout: int = SSH_CONNECT_TIMEOUT


@dataclass(frozen=True)
class BinariesSpec:
    url: str = ""  # a URL template on a mirror: {version}, {name}, {arch} (vmkube/binaries.py)
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
class AddonsSpec:
    """The cluster add-ons the bootstrap installs (vmkube/bootstrap/addons.py)."""
    coredns_replicas: int | None = None  # None: 1 + one per ten nodes
    metrics_server: bool = True
    network_policy: bool = True


@dataclass(frozen=True)
class KubernetesSpec:
    install: bool = True  # False: provision the VMs only
    version: str = "1.34.4"  # the toolchain's build (tools/go/kubernetes/go.mod)
    pod_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.244.0.0/16")
    service_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.96.0.0/12")
    binaries: BinariesSpec = field(default_factory=BinariesSpec)
    image_repository: str = DEFAULT_REPOSITORY  # every image vmkube deploys is named under it
    preload_images: bool | None = None  # None: preload when the binaries come from the toolchain
    addons: AddonsSpec = field(default_factory=AddonsSpec)


@dataclass(frozen=True)
class EtcdSpec:
    """The cluster's etcd: how many snapshots of it are kept on the operator's machine
    (vmkube/bootstrap/snapshot.py; `make snapshot`, `make snapshots`)."""
    snapshots_keep: int = 10


@dataclass(frozen=True)
class PkiSpec:
    """The cluster's certificates: a leaf within ``renew_before_days`` of its end is
    issued again by the next `up` (vmkube/pki.py), its components restarted one node at a time."""
    renew_before_days: int = 90


# A leaf lasts two years: a window past one year would renew every leaf at least yearly for nothing.
RENEW_BEFORE_MAX_DAYS = 365


@dataclass(frozen=True)
class NetworkSpec:
    """How nodes get their addresses. ``static``: each pool lists its addresses
    (``controlPlane.addresses``, ``workerPools[i].addresses``) on this subnet, written
    into the node through cloud-init (libvirt: the NoCloud seed; vSphere: guestinfo)."""
    mode: str = "dhcp"
    subnet: ipaddress.IPv4Network | None = None
    gateway: str = ""
    dns_servers: tuple[str, ...] = ()
    search_domains: tuple[str, ...] = ()

    @property
    def static(self) -> bool:
        return self.mode == "static"


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
    addresses: tuple[AddressRange, ...] = ()  # static addresses of cp-1, cp-2, … (vmkube:network.mode static)


@dataclass(frozen=True)
class WorkerPoolSpec:
    name: str
    count: int
    machine: MachineSpec
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[str, ...] = ()
    anti_affinity: bool = False  # keep the pool's VMs on different hosts (vSphere DRS rule)
    addresses: tuple[AddressRange, ...] = ()  # static addresses of its nodes 1, 2, … in order


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
    role: str  # roles.CONTROL_PLANE or roles.WORKER
    pool: str
    machine: MachineSpec
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[str, ...] = ()
    address: str = ""  # its static address; "" with DHCP


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
    network: NetworkSpec = field(default_factory=NetworkSpec)
    etcd: EtcdSpec = field(default_factory=EtcdSpec)
    pki: PkiSpec = field(default_factory=PkiSpec)

    def nodes(self) -> list[NodeSpec]:
        """Every node the cluster should have, control planes first."""
        cp = self.control_plane
        out = [NodeSpec(name=f"{self.name}-cp-{i}", role=CONTROL_PLANE, pool=CONTROL_PLANE,
                        machine=cp.machine, address=address)
               for i, address in enumerate(self._addresses(cp.addresses, cp.count), 1)]
        for pool in self.worker_pools:
            out += [NodeSpec(name=f"{self.name}-{pool.name}-{i}", role=WORKER, pool=pool.name,
                             machine=pool.machine, labels=pool.labels, taints=pool.taints, address=address)
                    for i, address in enumerate(self._addresses(pool.addresses, pool.count), 1)]
        return out

    def _addresses(self, ranges: tuple[AddressRange, ...], count: int) -> tuple[str, ...]:
        return pool_addresses(ranges, count) if self.network.static else ("",) * count


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

    name = top.string("name", default_name(stack), pattern=DNS_LABEL,
                      rule="must be a DNS label: lower-case letters, digits and '-', at most 63")
    hypervisor = top.string("hypervisor", choices=HYPERVISORS)
    libvirt = _libvirt(top, hypervisor)
    vsphere = _vsphere(top, hypervisor, secrets)
    network = _network(top)
    ssh = _ssh(top, secrets)
    kubernetes = _kubernetes(top)
    etcd = _etcd(top)
    pki = _pki(top)
    control_plane = _control_plane(top)
    pools = _worker_pools(top)
    workloads = _workloads(top, apps)
    top.done()

    if name and kubernetes and control_plane and pools is not None:
        _check_sizes(problems, name, kubernetes, control_plane, pools)
    if network and kubernetes and control_plane and pools is not None:
        _check_addresses(problems, network, kubernetes, control_plane, pools)
    if workloads and kubernetes and not kubernetes.install:
        problems.add(f"{NAMESPACE}:workloads", "apps need Kubernetes, but vmkube:kubernetes.install is false")
    if problems.lines:
        raise ConfigError(problems.lines)
    return ClusterSpec(name=name, hypervisor=hypervisor, ssh=ssh, kubernetes=kubernetes,
                       control_plane=control_plane, worker_pools=tuple(pools),
                       workloads=tuple(workloads), libvirt=libvirt, vsphere=vsphere, network=network,
                       etcd=etcd, pki=pki)


def _etcd(top: Fields) -> EtcdSpec:
    f = top.obj("etcd")
    if f is None:
        return EtcdSpec()
    snaps = f.obj("snapshots") or Fields({}, f.key("snapshots"), f.problems)
    keep = snaps.integer("keep", EtcdSpec.snapshots_keep, minimum=1, maximum=1000)
    snaps.done()
    f.done()
    return EtcdSpec(snapshots_keep=keep if keep is not None else EtcdSpec.snapshots_keep)


def _pki(top: Fields) -> PkiSpec:
    f = top.obj("pki")
    if f is None:
        return PkiSpec()
    days = f.integer("renewBeforeDays", PkiSpec.renew_before_days, minimum=1, maximum=RENEW_BEFORE_MAX_DAYS)
    f.done()
    return PkiSpec(renew_before_days=days if days is not None else PkiSpec.renew_before_days)


def default_name(stack: str) -> str:
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
        uri=_libvirt_uri(f, f.string("uri", d.uri)),
        network=f.string("network", d.network),
        storage_pool=f.string("storagePool", d.storage_pool),
        base_image=f.string("baseImage", d.base_image),
        domain_type=f.string("domainType", d.domain_type, choices=("qemu", "kvm")),
    )
    f.done()
    return spec


# The libvirt transports vmkube supports, and the URI parameters that only tune
# them. Anything else is refused: `qemu+ext` and the `command`/`netcat`/`proxy`
# parameters make libvirt run a program of the URI's choosing on this machine or
# the remote one, and `no_verify` skips the SSH host key check vmkube relies on.
LIBVIRT_SCHEMES = ("qemu", "qemu+ssh", "qemu+libssh", "qemu+libssh2", "qemu+tls", "qemu+unix", "test")
LIBVIRT_PARAMS = ("keyfile", "known_hosts", "sshauth", "pkipath", "socket", "mode",
                  "no_tty", "name")
_URI_HOST = re.compile(r"(?:[A-Za-z0-9_.-]+@)?(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")


def _libvirt_uri(f: Fields, uri: Any) -> Any:
    if not isinstance(uri, str):
        return uri
    scheme, sep, rest = uri.partition("://")
    rule = (f"must be a libvirt URI with one of the transports {', '.join(LIBVIRT_SCHEMES)}, "
            "like qemu:///system or qemu+ssh://user@host/system")
    if not sep or scheme not in LIBVIRT_SCHEMES:
        f.fail("uri", f"{rule} (got {uri!r})")
        return None
    where, _, query = rest.partition("?")
    host, slash, path = where.partition("/")
    if not slash or (host and not _URI_HOST.fullmatch(host)) or (scheme == "qemu+unix" and host):
        f.fail("uri", f"{rule} (got {uri!r})")
        return None
    if scheme.startswith("qemu") and f"/{path}" not in ("/system", "/session"):
        f.fail("uri", f"must name the /system or /session driver (got {uri!r})")
        return None
    for param in filter(None, query.split("&")):
        key = param.split("=", 1)[0]
        if key not in LIBVIRT_PARAMS:
            f.fail("uri", f"parameter {key!r} is not allowed (it would run a command, or skip the host key "
                          f"check); allowed: {', '.join(LIBVIRT_PARAMS)}")
            return None
    return uri


def _require_secret(f: Fields, name: str, top_key: str, secrets: set[str], multiline: bool = False) -> Secret | None:
    value = f.string(name, None, multiline=multiline)
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
        datacenter=_inventory(f, "datacenter"),
        datastore=_inventory(f, "datastore", ""),
        network=_inventory(f, "network"),
        template=_inventory(f, "template"),
        cluster=_inventory(f, "cluster", ""),
        resource_pool=_inventory(f, "resourcePool", ""),
        folder=_inventory(f, "folder", ""),
        storage_policy=f.string("storagePolicy", ""),
        custom_attributes=f.mapping("customAttributes", _custom_attribute),
        linked_clone=f.boolean("linkedClone", False),
        ca_file=f.string("caFile", ""),
        thumbprint=f.string("thumbprint", "", pattern=THUMBPRINT,
                            rule="must be a SHA-1, SHA-256 or SHA-512 fingerprint like AB:CD:… (20, 32 or 64 bytes)"),
        insecure=f.boolean("insecure", False),
    )
    if not (f.has("cluster") or f.has("resourcePool")):
        f.fail("cluster", "is required: set cluster or resourcePool (where the VMs run)")
    if f.has("datastore") and f.has("storagePolicy"):
        f.fail("storagePolicy", "set datastore or storagePolicy, not both (a policy picks a compatible datastore)")
    elif not (f.has("datastore") or f.has("storagePolicy")):
        f.fail("datastore", "is required: set datastore or storagePolicy (where the disks go)")
    if values["insecure"] and (values["ca_file"] or values["thumbprint"]):
        f.fail("insecure", "true turns TLS verification off; remove caFile/thumbprint or set insecure to false")
    if values["ca_file"] and values["thumbprint"]:
        f.fail("thumbprint", "set caFile or thumbprint, not both")
    f.done()
    if None in (server, user, password, *values.values()):
        return None
    return VsphereSpec(server=server, user=user, password=password, **values)


# Inventory settings: a name unique in its scope (datacenter, host folder, …), a path
# inside that scope (`prod/DC1_C0`), or a full inventory path from the root
# (`/F0/DC1/host/prod/DC1_C0`). vSphere escapes '/' inside a name as %2f, so a '/'
# always separates levels; an empty level is a typo.
_INVENTORY_PATH = re.compile(r"/?[^/]+(/[^/]+)*")
_INVENTORY_RULE = "must be a name or an inventory path like parent/child (no empty parts, no trailing '/')"
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
# vmkube's own custom attribute (the mark on VM folders it created) lives under this prefix.
VSPHERE_OWN_ATTRIBUTES = "vmkube."
MAX_ATTRIBUTE_NAME = 255


def _inventory(f: Fields, name: str, *default: str) -> Any:
    return f.string(name, *default, pattern=_INVENTORY_PATH, rule=_INVENTORY_RULE)


def _custom_attribute(name: Any, value: Any) -> str | None:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_ATTRIBUTE_NAME \
            or _CONTROL_CHARS.search(name):
        return f"must be an attribute name of 1 to {MAX_ATTRIBUTE_NAME} characters without control characters"
    if name.startswith(VSPHERE_OWN_ATTRIBUTES):
        return f"names starting with {VSPHERE_OWN_ATTRIBUTES!r} are vmkube's own; choose another"
    if not isinstance(value, str):
        return "must be a string (quote numbers and booleans)"
    if len(value) > 4096 or _CONTROL_CHARS.search(value):
        return "must be at most 4096 characters without control characters"
    return None


def _ssh(top: Fields, secrets: set[str]) -> SshSpec | None:
    f = top.obj("ssh") or Fields({}, top.key("ssh"), top.problems)
    d = SshSpec()
    user = f.string("user", d.user, pattern=_UNIX_USER, rule="must be a Unix user name")
    port = f.integer("port", d.port, minimum=1, maximum=65535)
    key = _require_secret(f, "privateKey", "ssh", secrets, multiline=True)
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
    if version and _VERSION.fullmatch(version) and minor(version) not in PINS:
        f.fail("version", f"Kubernetes {minor(version)} is not supported: vmkube pins its add-ons for "
                          f"{', '.join(sorted(PINS))}")
        version = None
    binaries = _binaries(f)
    if binaries is not None and binaries.source == "toolchain" and install and version and version != d.version:
        f.fail("version", f"{version}: the toolchain builds Kubernetes {d.version} only; for {version} set "
                          "vmkube:kubernetes.binaries.url (a mirror) or .dir (a directory of its binaries)")
    repository = f.string("imageRepository", d.image_repository, pattern=_REPOSITORY,
                          rule="must be a registry host with an optional port and path, like "
                               "registry.k8s.io or mirror.example.com:5000/k8s")
    preload = f.boolean("preloadImages", None)
    addons = _addons(f)
    f.done()
    if None in (install, version, pod, svc, binaries, repository, addons):
        return None
    return KubernetesSpec(install=install, version=version, pod_cidr=pod, service_cidr=svc, binaries=binaries,
                          image_repository=repository, preload_images=preload, addons=addons)


def _addons(parent: Fields) -> AddonsSpec | None:
    f = parent.obj("addons")
    if f is None:
        return AddonsSpec()
    d = AddonsSpec()
    replicas = f.integer("corednsReplicas", None, minimum=1, maximum=20)
    spec = AddonsSpec(coredns_replicas=replicas, metrics_server=f.boolean("metricsServer", d.metrics_server),
                      network_policy=f.boolean("networkPolicy", d.network_policy))
    f.done()
    return None if None in (spec.metrics_server, spec.network_policy) else spec


def _binaries(parent: Fields) -> BinariesSpec | None:
    f = parent.obj("binaries")
    if f is None:
        return BinariesSpec()
    url = f.string("url", "")
    sha = f.mapping("sha256", lambda k, v: (
        f"unknown binary; expected one of {', '.join(KUBE_BINARIES)}" if k not in KUBE_BINARIES
        else None if isinstance(v, str) and _SHA256.fullmatch(v)
        else "must be a sha256 hex digest (64 lower-case hex digits)"))
    directory = f.string("dir", "")
    if url and directory:
        f.fail("dir", "set url (a mirror) or dir (a local directory), not both")
    if url and not re.match(r"^https?://", url):
        f.fail("url", f"must be an http(s) URL (got {url!r})")
    if url:
        _url_template(f, url)
        given = f.raw.get("sha256")
        missing = [b for b in KUBE_BINARIES if not isinstance(given, dict) or b not in given]
        if missing and isinstance(given, (dict, type(None))):
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
    addresses = _ranges(f)
    f.done()
    if count is None or endpoint is None or None in vars(machine).values():
        return None
    return ControlPlaneSpec(count=count, machine=machine, endpoint=endpoint, addresses=addresses)


_DNS_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*")


def _ipv4(text: str, _path: str = "") -> str | None:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return f"must be an IPv4 address (got {text!r})"
    return None


def _network(top: Fields) -> NetworkSpec | None:
    f = top.obj("network")
    if f is None:
        return NetworkSpec()
    mode = f.string("mode", "dhcp", choices=NETWORK_MODES)
    static_keys = ("subnet", "gateway", "dnsServers", "searchDomains")
    if mode != "static":
        for key in static_keys:
            if f.has(key):
                f.fail(key, "only applies with vmkube:network.mode static (DHCP hands these out)")
                f.seen(key)
        f.done()
        return NetworkSpec() if mode else None
    subnet = None
    if f.has("subnet"):
        subnet = f.network("subnet", "", min_prefix=8, max_prefix=30)
    else:
        f.fail("subnet", "is required with mode static: the nodes' subnet in CIDR form, like 192.168.150.0/24")
    gateway = f.string("gateway")
    bad = _ipv4(gateway) if gateway is not None else None
    if bad:
        f.fail("gateway", bad)
        gateway = None
    if gateway is not None and subnet is not None:
        address = ipaddress.IPv4Address(gateway)
        if address not in subnet:
            f.fail("gateway", f"{gateway} is outside vmkube:network.subnet {subnet}")
            gateway = None
        elif address in (subnet.network_address, subnet.broadcast_address):
            f.fail("gateway", f"{gateway} is the network or broadcast address of {subnet}")
            gateway = None
    dns = f.strings("dnsServers", _ipv4)
    search = f.strings("searchDomains", lambda text, _p: None if _DNS_NAME.fullmatch(text)
                       else f"must be a DNS domain like lab.example.com (got {text!r})")
    f.done()
    if None in (subnet, gateway):
        return None
    # Without DNS servers of its own, a node asks its gateway (as most routers answer DNS).
    return NetworkSpec(mode="static", subnet=subnet, gateway=gateway,
                       dns_servers=tuple(dns) or (gateway,), search_domains=tuple(search))


def _ranges(f: Fields) -> tuple[AddressRange, ...]:
    """``addresses``: one address or range, or a list of them (checked against the network later)."""
    raw = f.raw.get("addresses")
    f.seen("addresses")
    if raw is None:
        return ()
    if isinstance(raw, str):
        items = [(f.key("addresses"), raw)]
    elif isinstance(raw, list):
        items = [(f"{f.key('addresses')}[{i}]", item) for i, item in enumerate(raw)]
    else:
        f.fail("addresses", "must be an address range like 10.0.0.10-10.0.0.19, or a list of addresses and ranges")
        return ()
    out = []
    for path, item in items:
        if not isinstance(item, str):
            f.problems.add(path, "must be a string: an IPv4 address or a range like 10.0.0.10-10.0.0.19")
            continue
        try:
            out.append(parse_range(item))
        except ValueError as exc:
            f.problems.add(path, str(exc))
    return tuple(out)


def _labels(key: str, value: Any) -> str | None:
    if not isinstance(key, str) or not _LABEL_NAME.fullmatch(key) or len(key) > 317:
        return "is not a valid Kubernetes label name"
    if not isinstance(value, str) or not _LABEL_VALUE.fullmatch(value):
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
        anti_affinity = f.boolean("antiAffinity", False)
        addresses = _ranges(f)
        f.done()
        if name is None or count is None or anti_affinity is None or None in vars(machine).values():
            ok = False
            continue
        pools.append(WorkerPoolSpec(name=name, count=count, machine=machine,
                                    labels=labels, taints=tuple(taints), anti_affinity=anti_affinity,
                                    addresses=addresses))
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
            else None if isinstance(v, (str, int)) and not isinstance(v, bool) and _QUANTITY.fullmatch(str(v))
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


def _example_range(subnet: ipaddress.IPv4Network, gateway: ipaddress.IPv4Address, count: int) -> str:
    """A range of ``count`` addresses on ``subnet`` for a hint: from the 10th host (routers and
    DNS servers usually sit below), past the gateway, or from the first host on a small subnet."""
    hosts = subnet.num_addresses - 2
    start = 10 if hosts >= 10 + count else 1
    first = subnet.network_address + start
    if first <= gateway < first + count:
        first = gateway + 1
    last = min(first + max(count, 1) - 1, subnet.broadcast_address - 1)
    return str(AddressRange(first, last))


def _check_addresses(problems: Problems, network: NetworkSpec, kubernetes: KubernetesSpec,
                     control_plane: ControlPlaneSpec, pools: list[WorkerPoolSpec]) -> None:
    """Static addresses: every pool has enough, on the subnet, and no two nodes share one."""
    owners = [(f"{NAMESPACE}:controlPlane.addresses", control_plane.addresses, control_plane.count)]
    owners += [(f"{NAMESPACE}:workerPools[{i}].addresses", p.addresses, p.count) for i, p in enumerate(pools)]
    if not network.static:
        for key, ranges, _count in owners:
            if ranges:
                problems.add(key, "static addresses need vmkube:network.mode static (with its subnet and gateway)")
        return
    subnet = network.subnet
    assert subnet is not None
    gateway = ipaddress.IPv4Address(network.gateway)
    reserved = {subnet.network_address: "the network address", subnet.broadcast_address: "the broadcast address",
                gateway: "the gateway"}
    clusters = {"vmkube:kubernetes.podCidr": kubernetes.pod_cidr,
                "vmkube:kubernetes.serviceCidr": kubernetes.service_cidr}
    seen: list[tuple[str, AddressRange]] = []
    for key, ranges, count in owners:
        if count and not ranges:
            # An entry that did not parse was reported already: one line per mistake.
            if not problems.about(key):
                problems.add(key, f"is required with vmkube:network.mode static: {count} address(es) on {subnet}, "
                                  f"like {_example_range(subnet, gateway, count)}")
            continue
        for r in ranges:
            if r.first not in subnet or r.last not in subnet:
                problems.add(key, f"{r} is outside vmkube:network.subnet {subnet}")
                continue
            for address, what in reserved.items():
                if address in r:
                    problems.add(key, f"{r} holds {address}, {what} of {subnet}")
            for other_key, cidr in clusters.items():
                if r.first in cidr or r.last in cidr or (r.first < cidr.network_address and r.last > cidr.broadcast_address):
                    problems.add(key, f"{r} lies inside {other_key} {cidr}: nodes and pods or services would collide")
            for other_key, other in seen:
                if r.overlaps(other):
                    where = "itself" if other_key == key else other_key
                    problems.add(key, f"{r} overlaps {other} of {where}: two nodes would get one address")
            seen.append((key, r))
        if ranges and capacity(ranges) < count:
            problems.add(key, f"holds {capacity(ranges)} address(es) but the pool has {count} nodes; "
                              "add addresses or lower its count")
