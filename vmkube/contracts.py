"""What crosses the Pulumi engine, typed.

Each dynamic resource's inputs (and the outputs a later run reads back) are a
frozen dataclass here. ``to_props()`` gives the camelCase dict the engine stores;
``from_props()`` reads it back, also from states written by older vmkube versions
(a key added later takes its default). The Pulumi layer writes with one and its
providers read with the other, so writer and reader cannot disagree; a unit test
round-trips every contract.

Unknown values: during a preview any input may be unknown, because an upstream
resource has a pending create or update (a pool whose VM was deleted by hand
leaves every node address unknown). The Pulumi layer replaces the engine's
unknown markers with ``UNKNOWN`` before calling ``from_props``, which then keeps
``UNKNOWN`` in place of the value (a list or mapping that is unknown, or holds an
unknown, becomes ``UNKNOWN`` whole). ``check`` and ``diff`` read contracts only;
the rule for every provider is: an unknown input is a change (an update, never a
replacement by itself), and nothing iterates or indexes it. Create, update, read
and delete never see unknowns.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
import datetime as dt
from typing import Any, Mapping

from vmkube import pki
from vmkube.config import SSH_CONNECT_TIMEOUT, LibvirtSpec, Secret, VsphereSpec
from vmkube.versions import DEFAULT_REPOSITORY


class Unknown:
    """The one value that stands for an input the engine does not know yet."""

    _instance: "Unknown | None" = None

    def __new__(cls) -> "Unknown":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = Unknown()


def is_unknown(value: Any) -> bool:
    """True for UNKNOWN and for any list or mapping holding it, however deep."""
    if value is UNKNOWN:
        return True
    if isinstance(value, Mapping):
        return any(is_unknown(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(is_unknown(v) for v in value)
    return False


def _read(props: Mapping[str, Any], key: str, convert, default: Any = None) -> Any:
    """props[key] converted, its default when missing, UNKNOWN when (part of it is) unknown."""
    value = props.get(key, default) if isinstance(props, Mapping) else default
    if is_unknown(value):
        return UNKNOWN
    return convert(value) if value is not None else default


def differs(old: Any, new: Any) -> bool:
    """A field changed, or may have: an unknown value always counts as a change."""
    return is_unknown(old) or is_unknown(new) or old != new


def changed_fields(old: Any, new: Any, names: tuple[str, ...] | None = None) -> list[str]:
    """The named fields (all by default) that differ or may differ between two contracts."""
    names = names or tuple(f.name for f in fields(new))
    return [n for n in names if differs(getattr(old, n), getattr(new, n))]


def _int(value: Any) -> int:
    return int(value)  # numbers cross the engine as floats


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value)


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in dict(value).items()}


# -- hypervisor settings ----------------------------------------------------------

HYPERVISOR_KINDS = ("libvirt", "vsphere")
# Settings whose change means "other VMs somewhere else": the pool is replaced.
IDENTITY = {"libvirt": ("uri", "storage_pool"), "vsphere": ("server", "datacenter", "folder")}
_VSPHERE_PROPS = {"server": "server", "user": "user", "password": "password", "datacenter": "datacenter",
                  "datastore": "datastore", "network": "network", "folder": "folder", "cluster": "cluster",
                  "resource_pool": "resourcePool", "linked_clone": "linkedClone", "ca_file": "caFile",
                  "thumbprint": "thumbprint", "insecure": "insecure", "storage_policy": "storagePolicy",
                  "custom_attributes": "customAttributes"}
_LIBVIRT_PROPS = {"uri": "uri", "network": "network", "storage_pool": "storagePool", "domain_type": "domainType"}
Hypervisor = LibvirtSpec | VsphereSpec


def hypervisor_to_props(spec: Hypervisor) -> dict[str, Any]:
    """The connection settings as the VM pool resources hold them; the vSphere password
    in the clear here, marked secret by the Pulumi layer."""
    if isinstance(spec, LibvirtSpec):
        return {"kind": "libvirt", **{p: getattr(spec, f) for f, p in _LIBVIRT_PROPS.items()}}
    values = {p: getattr(spec, f) for f, p in _VSPHERE_PROPS.items()}
    values["password"] = spec.password.reveal()
    values["customAttributes"] = dict(spec.custom_attributes)
    return {"kind": "vsphere", **values}


def hypervisor_from_props(props: Mapping[str, Any]) -> Hypervisor | Unknown:
    if is_unknown(props):
        return UNKNOWN
    kind = props.get("kind")
    if kind == "libvirt":
        d = LibvirtSpec()
        return LibvirtSpec(**{f: props.get(p, getattr(d, f)) for f, p in _LIBVIRT_PROPS.items()})
    if kind == "vsphere":
        values = {f: props.get(p, "") for f, p in _VSPHERE_PROPS.items()}
        for flag in ("linked_clone", "insecure"):
            values[flag] = bool(values[flag])
        # A state written before storage policies and custom attributes existed lacks both.
        values["storage_policy"] = str(values["storage_policy"] or "")
        values["custom_attributes"] = _str_map(values["custom_attributes"] or {})
        values["password"] = Secret(str(values["password"]))
        # The template travels as the pool's image, not with the connection settings.
        return VsphereSpec(**values, template=str(props.get("template") or ""))
    raise ValueError(f"unknown hypervisor kind {kind!r} (have: {', '.join(HYPERVISOR_KINDS)})")


def hypervisor_identity(spec: Hypervisor | Unknown) -> tuple:
    """What names the place VMs live in; UNKNOWN when the settings are."""
    if spec is UNKNOWN:
        return (UNKNOWN,)
    kind = "libvirt" if isinstance(spec, LibvirtSpec) else "vsphere"
    return (kind, *(getattr(spec, f) for f in IDENTITY[kind]))


# -- VM pools -----------------------------------------------------------------------

@dataclass(frozen=True)
class StaticNetwork:
    """The network settings of a pool whose nodes take static addresses."""
    prefix: int
    gateway: str
    dns_servers: tuple[str, ...] = ()
    search_domains: tuple[str, ...] = ()

    def to_props(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "gateway": self.gateway, "dnsServers": list(self.dns_servers),
                "searchDomains": list(self.search_domains)}

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> "StaticNetwork | Unknown":
        if is_unknown(props):
            return UNKNOWN
        return cls(prefix=_int(props["prefix"]), gateway=str(props["gateway"]),
                   dns_servers=_strs(props.get("dnsServers") or ()),
                   search_domains=_strs(props.get("searchDomains") or ()))


@dataclass(frozen=True)
class PoolSpec:
    """The inputs of one VmPool: same-sized VMs stamped with one owner."""
    owner: str
    names: tuple[str, ...]
    cpus: int
    memory_mb: int
    disk_gb: int
    image: str
    ssh_user: str
    ssh_public_key: str | Unknown  # unknown until a generated stack key exists
    config_path: str = ""  # e.g. "vmkube:workerPools[0]", to name keys in errors
    hypervisor: Hypervisor | Unknown | None = None
    keep_leaving: bool = False  # keep VMs that left until Kubernetes drained them
    anti_affinity: bool = False  # keep the VMs on different hosts (vSphere: a DRS rule)
    network: StaticNetwork | Unknown | None = None  # None: DHCP
    addresses: tuple[str, ...] | Unknown = ()  # with a static network: the address of each name, in order

    def address_of(self) -> dict[str, str]:
        """Node name -> static address (empty with DHCP)."""
        if self.network is None or is_unknown(self.addresses) or is_unknown(self.names):
            return {}
        return dict(zip(self.names, self.addresses))

    def to_props(self) -> dict[str, Any]:
        return {"hypervisor": hypervisor_to_props(self.hypervisor) if self.hypervisor is not None else None,
                "network": self.network.to_props() if isinstance(self.network, StaticNetwork) else None,
                "addresses": list(self.addresses),
                "keepLeaving": self.keep_leaving, "antiAffinity": self.anti_affinity,
                "owner": self.owner, "names": list(self.names),
                "cpus": self.cpus, "memoryMb": self.memory_mb, "diskGb": self.disk_gb, "image": self.image,
                "sshUser": self.ssh_user, "sshPublicKey": self.ssh_public_key, "configPath": self.config_path}

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> "PoolSpec":
        hv = props.get("hypervisor")
        return cls(owner=_read(props, "owner", str), names=_read(props, "names", _strs, ()),
                   cpus=_read(props, "cpus", _int), memory_mb=_read(props, "memoryMb", _int),
                   disk_gb=_read(props, "diskGb", _int), image=_read(props, "image", str),
                   ssh_user=_read(props, "sshUser", str), ssh_public_key=_read(props, "sshPublicKey", str),
                   config_path=_read(props, "configPath", str, ""),
                   hypervisor=hypervisor_from_props(hv) if hv is not None else None,
                   keep_leaving=_read(props, "keepLeaving", bool, False),
                   anti_affinity=_read(props, "antiAffinity", bool, False),
                   network=_read(props, "network", StaticNetwork.from_props),
                   addresses=_read(props, "addresses", _strs, ()))


@dataclass(frozen=True)
class LeavingPool:
    hypervisor: Hypervisor | Unknown
    owner: str
    leaving: tuple[str, ...] | Unknown  # VMs that left the pool, reported by the pool

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> "LeavingPool":
        return cls(hypervisor=hypervisor_from_props(props.get("hypervisor") or {"kind": "libvirt"}),
                   owner=_read(props, "owner", str), leaving=_read(props, "leaving", _strs, ()))


@dataclass(frozen=True)
class LeavingInputs:
    """The inputs of LeavingVms: every pool's VMs that left it; ``removed`` is its output."""
    pools: tuple[LeavingPool, ...] | Unknown
    removed: tuple[str, ...] = ()

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> "LeavingInputs":
        pools = props.get("pools")
        return cls(pools=UNKNOWN if pools is UNKNOWN else tuple(LeavingPool.from_props(p) for p in pools or []),
                   removed=_read(props, "removed", _strs, ()))


# -- the bootstrap --------------------------------------------------------------------

@dataclass(frozen=True)
class BinarySource:
    """Where node binaries and preloaded images come from; empty without Kubernetes."""
    source: str = ""                  # "toolchain", "dir" or "url"; "" without Kubernetes
    dirs: tuple[str, ...] = ()        # toolchain or local directories holding the binaries
    urls: Mapping[str, str] = field(default_factory=dict)    # binary -> URL on a mirror
    sha256: Mapping[str, str] = field(default_factory=dict)  # binary -> digest, with urls
    pause: str = ""                   # the toolchain's pause build (the pod sandbox image)
    hello: str = ""                   # the toolchain's demo app build, when the stack runs it
    addons: Mapping[str, str] = field(default_factory=dict)  # add-on -> the toolchain's build, when preloaded

    def to_props(self) -> dict[str, Any]:
        if not self.source:
            return {}
        out: dict[str, Any] = {"source": self.source}
        if self.source == "url":
            out.update(urls=dict(self.urls), sha256=dict(self.sha256))
        else:
            out["dirs"] = list(self.dirs)
        return {**out, "pause": self.pause, "hello": self.hello, **({"addons": dict(self.addons)} if self.addons else {})}

    @classmethod
    def from_props(cls, props: Mapping[str, Any] | None) -> "BinarySource | Unknown":
        if is_unknown(props):
            return UNKNOWN
        props = props or {}
        return cls(source=str(props.get("source", "")), dirs=_strs(props.get("dirs") or ()),
                   urls=_str_map(props.get("urls") or {}), sha256=_str_map(props.get("sha256") or {}),
                   pause=str(props.get("pause") or ""), hello=str(props.get("hello") or ""),
                   addons=_str_map(props.get("addons") or {}))


@dataclass(frozen=True)
class Bastion:
    host: str
    port: int
    user: str
    host_key: str

    def to_props(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "user": self.user, "hostKey": self.host_key}

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> "Bastion":
        return cls(str(props["host"]), int(props["port"]), str(props["user"]), str(props["hostKey"]))


DEFAULT_CONNECT_TIMEOUT = SSH_CONNECT_TIMEOUT


@dataclass(frozen=True)
class SshSettings:
    user: str
    port: int
    private_key: str = field(repr=False)  # secret: the Pulumi layer marks the whole ssh input secret
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT
    bastion: Bastion | None = None

    def to_props(self) -> dict[str, Any]:
        return {"user": self.user, "port": self.port, "privateKey": self.private_key,
                "connectTimeout": self.connect_timeout,
                "bastion": self.bastion.to_props() if self.bastion else None}

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> "SshSettings | Unknown":
        if is_unknown(props):
            return UNKNOWN
        bastion = props.get("bastion")
        return cls(user=str(props["user"]), port=int(props["port"]), private_key=str(props["privateKey"]),
                   connect_timeout=int(props.get("connectTimeout") or DEFAULT_CONNECT_TIMEOUT),
                   bastion=Bastion.from_props(bastion) if bastion else None)


@dataclass(frozen=True)
class NodeInput:
    """A node as the bootstrap gets it: from the config, and from its VM once it runs."""
    name: str
    role: str
    ip: str
    host_key: str  # the pinned SSH host public key
    memory_mb: int
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[str, ...] = ()

    def to_props(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "ip": self.ip, "hostKey": self.host_key,
                "memoryMb": self.memory_mb, "labels": dict(self.labels), "taints": list(self.taints)}

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> "NodeInput":
        return cls(name=str(props["name"]), role=str(props["role"]), ip=str(props.get("ip") or ""),
                   host_key=str(props.get("hostKey") or ""), memory_mb=int(props.get("memoryMb") or 0),
                   labels=_str_map(props.get("labels") or {}), taints=_strs(props.get("taints") or ()))


@dataclass(frozen=True)
class AddonSettings:
    """The cluster add-ons and where their images come from (vmkube/bootstrap/addons.py)."""
    image_repository: str = DEFAULT_REPOSITORY
    preload: bool = True           # the toolchain's builds imported on every node under the upstream names
    coredns_replicas: int = 0      # 0: by the node count
    metrics_server: bool = True
    network_policy: bool = True

    def to_props(self) -> dict[str, Any]:
        return {"imageRepository": self.image_repository, "preload": self.preload,
                "corednsReplicas": self.coredns_replicas, "metricsServer": self.metrics_server,
                "networkPolicy": self.network_policy}

    @classmethod
    def from_props(cls, props: Mapping[str, Any] | None) -> "AddonSettings | Unknown":
        if is_unknown(props):
            return UNKNOWN
        if props is None:
            # A state from before the add-ons: no repository, so the next run differs and installs them.
            return cls(image_repository="")
        d = cls()
        return cls(image_repository=str(props.get("imageRepository") or d.image_repository),
                   preload=bool(props.get("preload", d.preload)),
                   coredns_replicas=int(props.get("corednsReplicas") or 0),
                   metrics_server=bool(props.get("metricsServer", d.metrics_server)),
                   network_policy=bool(props.get("networkPolicy", d.network_policy)))


@dataclass(frozen=True)
class SnapshotPolicy:
    """Where the bootstrap keeps the etcd snapshots it takes before a disruptive step (a
    control plane restarting on changed configuration, a node removed): a directory on
    the operator's machine, how many of them, and the etcdutl that checks each one.
    Operator-side settings, not the cluster's: a change of them alone runs nothing."""
    dir: str = ""  # "": none taken
    keep: int = 10
    etcdutl: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.dir and self.etcdutl)

    def to_props(self) -> dict[str, Any]:
        return {"dir": self.dir, "keep": self.keep, "etcdutl": self.etcdutl}

    @classmethod
    def from_props(cls, props: Mapping[str, Any] | None) -> "SnapshotPolicy | Unknown":
        if is_unknown(props):
            return UNKNOWN
        props = props or {}
        return cls(dir=str(props.get("dir") or ""), keep=_int(props.get("keep") or cls.keep),
                   etcdutl=str(props.get("etcdutl") or ""))


@dataclass(frozen=True)
class PkiPolicy:
    """When leaf certificates are renewed (vmkube:pki.renewBeforeDays), and how long a new
    one lasts: 0 is vmkube's two years; tests set seconds, to see short-lived ones renewed.
    Not a cluster field: a change alone runs nothing; the diff runs the bootstrap when a
    certificate in state is inside the window."""
    renew_before_days: int = pki.RENEW_BEFORE_DAYS
    leaf_lifetime_seconds: int = 0

    def lifetimes(self) -> pki.Lifetimes:
        leaf = dt.timedelta(seconds=self.leaf_lifetime_seconds) if self.leaf_lifetime_seconds else pki.LEAF_LIFETIME
        return pki.Lifetimes(renew_before=dt.timedelta(days=self.renew_before_days), leaf=leaf)

    def to_props(self) -> dict[str, Any]:
        return {"renewBeforeDays": self.renew_before_days, "leafLifetimeSeconds": self.leaf_lifetime_seconds}

    @classmethod
    def from_props(cls, props: Mapping[str, Any] | None) -> "PkiPolicy | Unknown":
        if is_unknown(props):
            return UNKNOWN
        props = props or {}  # a state from before renewal: the defaults
        return cls(renew_before_days=_int(props.get("renewBeforeDays") or pki.RENEW_BEFORE_DAYS),
                   leaf_lifetime_seconds=_int(props.get("leafLifetimeSeconds") or 0))


@dataclass(frozen=True)
class BootstrapInputs:
    """The inputs of the Bootstrap resource: the nodes, how to reach them, what to install."""
    cluster: str
    version: str
    pod_cidr: str
    service_cidr: str
    nodes: tuple[NodeInput, ...] | Unknown
    ssh: SshSettings | Unknown
    binaries: BinarySource | Unknown
    endpoint: str = ""
    addons: AddonSettings | Unknown = field(default_factory=AddonSettings)
    snapshots: SnapshotPolicy | Unknown = field(default_factory=SnapshotPolicy)
    pki_policy: PkiPolicy | Unknown = field(default_factory=PkiPolicy)  # "pki" is the output's name

    # What the cluster is: a change in any of these runs the bootstrap (snapshots: see SnapshotPolicy;
    # pki_policy: see PkiPolicy).
    CLUSTER_FIELDS = ("cluster", "version", "pod_cidr", "service_cidr", "nodes", "ssh", "binaries", "endpoint",
                      "addons")

    def to_props(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "version": self.version, "podCidr": self.pod_cidr,
                "serviceCidr": self.service_cidr, "nodes": [n.to_props() for n in self.nodes],
                "ssh": self.ssh.to_props(), "binaries": self.binaries.to_props(), "endpoint": self.endpoint,
                "addons": self.addons.to_props(), "snapshots": self.snapshots.to_props(),
                "pkiPolicy": self.pki_policy.to_props()}

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> "BootstrapInputs":
        nodes = props.get("nodes")
        return cls(cluster=_read(props, "cluster", str), version=_read(props, "version", str),
                   pod_cidr=_read(props, "podCidr", str), service_cidr=_read(props, "serviceCidr", str),
                   nodes=UNKNOWN if is_unknown(nodes) else tuple(NodeInput.from_props(n) for n in nodes or []),
                   ssh=SshSettings.from_props(props["ssh"]),
                   binaries=BinarySource.from_props(props.get("binaries")),
                   endpoint=_read(props, "endpoint", str, "") or "",
                   addons=AddonSettings.from_props(props.get("addons")),
                   snapshots=SnapshotPolicy.from_props(props.get("snapshots")),
                   pki_policy=PkiPolicy.from_props(props.get("pkiPolicy")))

    def known(self) -> "BootstrapInputs":
        """Itself, once nothing is unknown; a bug otherwise (only check and diff see unknowns)."""
        for f in fields(self):
            if is_unknown(getattr(self, f.name)):
                raise ValueError(f"bootstrap input {f.name} is unknown outside a preview")
        return self


@dataclass(frozen=True)
class NodeStatus:
    name: str
    ready: bool
    kubelet_version: str = ""
    ip: str = ""

    def to_props(self) -> dict[str, Any]:
        return {"name": self.name, "ready": self.ready, "kubeletVersion": self.kubelet_version, "ip": self.ip}

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> "NodeStatus":
        return cls(str(props["name"]), bool(props.get("ready")), str(props.get("kubeletVersion") or ""),
                   str(props.get("ip") or ""))


@dataclass(frozen=True)
class CertPair:
    cert: str
    key: str = field(repr=False)


@dataclass(frozen=True)
class BootstrapState:
    """What a bootstrap run leaves for the user and for the next run to keep."""
    kubeconfig: str = field(default="", repr=False)
    api_server: str = ""
    pod_cidrs: Mapping[str, str] = field(default_factory=dict)   # node -> its pod range, kept for good
    pki: Mapping[str, CertPair] = field(default_factory=dict)    # name -> certificate and key, kept
    node_status: tuple[NodeStatus, ...] = ()

    def to_props(self) -> dict[str, Any]:
        return {"kubeconfig": self.kubeconfig, "apiServer": self.api_server, "podCidrs": dict(self.pod_cidrs),
                "pki": {k: {"cert": v.cert, "key": v.key} for k, v in self.pki.items()},
                "nodeStatus": [s.to_props() for s in self.node_status]}

    @classmethod
    def from_props(cls, props: Mapping[str, Any] | None) -> "BootstrapState":
        props = props or {}
        return cls(kubeconfig=str(props.get("kubeconfig") or ""), api_server=str(props.get("apiServer") or ""),
                   pod_cidrs=_str_map(props.get("podCidrs") or {}),
                   pki={k: CertPair(v["cert"], v["key"]) for k, v in (props.get("pki") or {}).items()},
                   node_status=tuple(NodeStatus.from_props(s) for s in props.get("nodeStatus") or []))

    def public_pki(self) -> dict[str, str]:
        """Name -> the public half of each PKI entry (certificates, the service-account public key)."""
        return {k: v.cert for k, v in self.pki.items()}

    def with_status(self, status: tuple[NodeStatus, ...]) -> "BootstrapState":
        return replace(self, node_status=status)
