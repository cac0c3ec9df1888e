"""Stack configuration: every example loads; every rule names its key when broken."""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any, Callable

import pytest

from vmkube import config
from vmkube.errors import ConfigError
from vmkube.sshkeys import generate_ed25519
from tests.helpers import EXAMPLE_STACKS, example_raw, example_secret_keys

APPS = ["hello"]


def load(raw: dict[str, Any], stack: str = "t", secrets: set[str] = frozenset({"vsphere", "ssh"})):
    return config.load(raw, stack=stack, secret_keys=secrets, apps=APPS)


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_example_stacks_load(stack):
    spec = config.load(example_raw(stack), stack=stack, secret_keys=example_secret_keys(stack), apps=APPS)
    nodes = spec.nodes()
    assert spec.name == stack
    assert nodes[0].name == f"{stack}-cp-1" and nodes[0].role == "control-plane"
    assert len([n for n in nodes if n.role == "control-plane"]) == spec.control_plane.count
    assert len(nodes) == spec.control_plane.count + sum(p.count for p in spec.worker_pools)
    assert len({n.name for n in nodes}) == len(nodes)


def test_local_stack_is_one_control_plane_and_one_worker_on_libvirt():
    spec = load(example_raw("local"), stack="local")
    assert spec.hypervisor == "libvirt" and spec.vsphere is None
    assert spec.libvirt == config.LibvirtSpec(uri="qemu:///system", network="default",
                                              storage_pool="default", base_image="", domain_type="qemu")
    assert [(n.name, n.role) for n in spec.nodes()] == [("local-cp-1", "control-plane"),
                                                         ("local-worker-1", "worker")]
    assert spec.kubernetes.binaries.source == "toolchain"
    assert spec.ssh.private_key is None  # generated per stack


def test_prod_stack_is_highly_available_with_two_pools():
    spec = load(example_raw("prod"), stack="prod")
    assert spec.control_plane.count == 3 and spec.control_plane.endpoint == "k8s-api.prod.example.internal"
    assert [p.name for p in spec.worker_pools] == ["general", "batch"]
    assert spec.worker_pools[1].taints == ("dedicated=batch:NoSchedule",)
    assert spec.vsphere.ca_file and not spec.vsphere.insecure
    assert spec.ssh.bastion.user == "ops" and spec.ssh.bastion.port == 22
    assert spec.kubernetes.binaries.source == "url"
    assert set(spec.kubernetes.binaries.sha256) == set(config.KUBE_BINARIES)


def test_binaries_from_a_mirror_with_every_digest_are_accepted():
    digests = {b: hashlib.sha256(b.encode()).hexdigest() for b in config.KUBE_BINARIES}
    url = "https://dl.k8s.io/release/v{version}/bin/linux/{arch}/{name}"
    spec = load({"hypervisor": "libvirt", "kubernetes": {"binaries": {"url": url, "sha256": digests}}})
    assert spec.kubernetes.binaries == config.BinariesSpec(url=url, sha256=digests)
    assert spec.kubernetes.binaries.source == "url"
    # Another version than the toolchain's comes from the mirror.
    other = load({"hypervisor": "libvirt", "kubernetes": {"version": "1.33.7",
                                                          "binaries": {"url": url, "sha256": digests}}})
    assert other.kubernetes.version == "1.33.7"


def test_defaults_fill_a_minimal_stack():
    spec = load({"hypervisor": "libvirt"}, stack="Team_A.Dev")
    assert spec.name == "team-a-dev"
    assert spec.kubernetes.pod_cidr == ipaddress.ip_network("10.244.0.0/16")
    assert spec.kubernetes.service_cidr == ipaddress.ip_network("10.96.0.0/12")
    assert spec.control_plane.count == 1 and spec.worker_pools == ()
    assert spec.ssh.user == "vmkube" and spec.ssh.port == 22


def test_secret_values_never_show_in_repr():
    raw = example_raw("dev")
    key = generate_ed25519()
    raw["ssh"]["privateKey"] = key.private_openssh
    spec = load(raw)
    text = repr(spec)
    assert "dev-vcenter-password" not in text
    assert key.private_openssh.splitlines()[1] not in text
    assert spec.vsphere.password.reveal() == "dev-vcenter-password"
    assert spec.ssh.private_key.reveal() == key.private_openssh


def test_all_problems_are_reported_at_once():
    raw = example_raw("local")
    raw["controlPlane"]["count"] = 2
    raw["workerPools"][0]["memoryMb"] = 512
    raw["kubernetes"] = {"podCidr": "10.96.0.0/16"}
    raw["colour"] = "blue"
    with pytest.raises(ConfigError) as err:
        load(raw)
    assert err.value.problems == [
        "vmkube:kubernetes.serviceCidr: overlaps vmkube:kubernetes.podCidr (10.96.0.0/12 and 10.96.0.0/16)",
        "vmkube:controlPlane.count: must be 1 or 3 (got 2)",
        "vmkube:workerPools[0].memoryMb: must be at least 1024 (got 512)",
        "vmkube:colour: unknown key",
    ]
    assert str(err.value).startswith("invalid stack configuration (4 problems):")


Mutation = Callable[[dict[str, Any]], None]


def setter(path: str, value: Any) -> Mutation:
    """A mutation that sets a dotted path; list items as name[i]."""
    def apply(raw: dict[str, Any]) -> None:
        node: Any = raw
        parts = path.split(".")
        for part in parts[:-1]:
            if part.endswith("]"):
                name, index = part[:-1].split("[")
                node = node[name][int(index)]
            else:
                node = node.setdefault(part, {})
        node[parts[-1]] = value
    return apply


def deleter(path: str) -> Mutation:
    def apply(raw: dict[str, Any]) -> None:
        node: Any = raw
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[part]
        del node[parts[-1]]
    return apply


# (case, base stack, mutation, expected problem: key and the start of its message)
INVALID = [
    ("wrong type: string for number", "local", setter("controlPlane.cpus", "two"),
     "vmkube:controlPlane.cpus: must be a whole number (got a string)"),
    ("wrong type: bool for number", "local", setter("workerPools[0].count", True),
     "vmkube:workerPools[0].count: must be a whole number (got a boolean)"),
    ("wrong type: list for object", "local", setter("kubernetes", ["1.34.4"]),
     "vmkube:kubernetes: must be an object (got a list)"),
    ("out of range: memory", "local", setter("workerPools[0].memoryMb", 512),
     "vmkube:workerPools[0].memoryMb: must be at least 1024 (got 512)"),
    ("out of range: control-plane memory", "local", setter("controlPlane.memoryMb", 1024),
     "vmkube:controlPlane.memoryMb: must be at least 1536 (got 1024)"),
    ("out of range: cpus", "local", setter("controlPlane.cpus", 0),
     "vmkube:controlPlane.cpus: must be at least 1 (got 0)"),
    ("out of range: disk", "local", setter("workerPools[0].diskGb", 2),
     "vmkube:workerPools[0].diskGb: must be at least 4 (got 2)"),
    ("out of range: ssh port", "local", setter("ssh.port", 70000),
     "vmkube:ssh.port: must be at most 65535 (got 70000)"),
    ("two control planes", "local", setter("controlPlane.count", 2),
     "vmkube:controlPlane.count: must be 1 or 3 (got 2)"),
    ("API endpoint with a port", "local", setter("controlPlane.endpoint", "api.example.org:443"),
     "vmkube:controlPlane.endpoint: must be a host name or IPv4 address (the API port is 6443) "
     "(got 'api.example.org:443')"),
    ("short connect timeout", "local", setter("ssh.connectTimeoutSeconds", 1),
     "vmkube:ssh.connectTimeoutSeconds: must be at least 5 (got 1)"),
    ("missing required: hypervisor", "local", deleter("hypervisor"),
     "vmkube:hypervisor: is required"),
    ("unknown hypervisor", "local", setter("hypervisor", "xen"),
     "vmkube:hypervisor: must be one of libvirt, vsphere (got 'xen')"),
    ("unknown top-level key", "local", setter("controlplane", {"count": 3}),
     "vmkube:controlplane: unknown key"),
    ("unknown nested key", "local", setter("workerPools[0].memory", 4096),
     "vmkube:workerPools[0].memory: unknown key"),
    ("unknown libvirt key", "local", setter("libvirt.pool", "images"),
     "vmkube:libvirt.pool: unknown key"),
    ("bad pod CIDR", "local", setter("kubernetes.podCidr", "10.244.0.0/33"),
     "vmkube:kubernetes.podCidr: must be an IPv4 network in CIDR form"),
    ("pod CIDR with host bits", "local", setter("kubernetes.podCidr", "10.244.1.0/16"),
     "vmkube:kubernetes.podCidr: must be an IPv4 network in CIDR form"),
    ("pod CIDR too small for per-node ranges", "local", setter("kubernetes.podCidr", "10.244.0.0/24"),
     "vmkube:kubernetes.podCidr: prefix length must be between /8 and /23"),
    ("service CIDR IPv6", "local", setter("kubernetes.serviceCidr", "fd00::/108"),
     "vmkube:kubernetes.serviceCidr: must be an IPv4 network"),
    ("overlapping pod and service CIDRs", "local", setter("kubernetes.serviceCidr", "10.244.128.0/20"),
     "vmkube:kubernetes.serviceCidr: overlaps vmkube:kubernetes.podCidr"),
    ("more nodes than pod ranges", "prod", setter("kubernetes.podCidr", "10.32.0.0/23"),
     "vmkube:kubernetes.podCidr: 10.32.0.0/23 holds 2 node ranges of /24 but the cluster has 8 nodes"),
    ("bad kubernetes version", "local", setter("kubernetes.version", "v1.34"),
     "vmkube:kubernetes.version: must be a release like 1.34.4"),
    ("a version the toolchain does not build", "local", setter("kubernetes.version", "1.33.7"),
     "vmkube:kubernetes.version: 1.33.7: the toolchain builds Kubernetes 1.34.4 only; for 1.33.7 set "
     "vmkube:kubernetes.binaries.url"),
    ("binaries from url without digests", "local", setter("kubernetes.binaries", {"url": "https://mirror.example/k8s"}),
     "vmkube:kubernetes.binaries.sha256: needs a digest for every binary"),
    ("binaries from url with some digests", "local", setter("kubernetes.binaries", {
        "url": "https://mirror.example/k8s", "sha256": {b: "a" * 64 for b in config.KUBE_BINARIES[:6]}}),
     "vmkube:kubernetes.binaries.sha256: needs a digest for every binary fetched from url; missing: etcd, etcdctl"),
    ("binaries from both url and dir", "local",
     setter("kubernetes.binaries", {"url": "https://m.example", "dir": "/srv/k8s", "sha256": {}}),
     "vmkube:kubernetes.binaries.dir: set url (a mirror) or dir"),
    ("binaries url not http", "local", setter("kubernetes.binaries", {"url": "ftp://m.example", "sha256": {}}),
     "vmkube:kubernetes.binaries.url: must be an http(s) URL"),
    ("binaries url unknown placeholder", "local",
     setter("kubernetes.binaries", {"url": "https://m.example/{release}/{name}", "sha256": {}}),
     "vmkube:kubernetes.binaries.url: unknown placeholder {release}; use {version}, {name}, {arch}"),
    ("binaries url unpaired brace", "local",
     setter("kubernetes.binaries", {"url": "https://m.example/v{version/{name}", "sha256": {}}),
     "vmkube:kubernetes.binaries.url: is not a valid template"),
    ("binaries digests without url", "local", setter("kubernetes.binaries", {"sha256": {"kubelet": "a" * 64}}),
     "vmkube:kubernetes.binaries.sha256: only applies with url"),
    ("binaries digest not hex", "local", setter("kubernetes.binaries", {"url": "https://m", "sha256": {"kubelet": "abc"}}),
     "vmkube:kubernetes.binaries.sha256.kubelet: must be a sha256 hex digest"),
    ("duplicate pool names", "prod", setter("workerPools[1].name", "general"),
     "vmkube:workerPools[1].name: duplicate pool name 'general' (also workerPools[0])"),
    ("pool name not a DNS label", "local", setter("workerPools[0].name", "Big_Workers"),
     "vmkube:workerPools[0].name: must be a DNS label"),
    ("pool name reserved", "local", setter("workerPools[0].name", "cp"),
     "vmkube:workerPools[0].name: 'cp' is reserved"),
    ("pool without name", "local", setter("workerPools", [{"count": 1}]),
     "vmkube:workerPools[0].name: is required"),
    ("pool item not an object", "local", setter("workerPools", ["worker"]),
     "vmkube:workerPools[0]: must be an object (got a string)"),
    ("bad taint effect", "prod", setter("workerPools[1].taints", ["dedicated=batch:Never"]),
     "vmkube:workerPools[1].taints[0]: must look like key=value:Effect"),
    ("bad label value", "prod", setter("workerPools[0].labels", {"tier": "has spaces"}),
     "vmkube:workerPools[0].labels.tier: must be a Kubernetes label value"),
    ("node names too long", "local", setter("workerPools[0].name", "w" * 60),
     "vmkube:workerPools[0].name: node name"),
    ("bad cluster name", "local", setter("name", "My Cluster"),
     "vmkube:name: must be a DNS label"),
    ("ssh user not a unix name", "local", setter("ssh.user", "Root User"),
     "vmkube:ssh.user: must be a Unix user name"),
    ("ssh key in plaintext", "local", setter("ssh.privateKey", "-----BEGIN OPENSSH PRIVATE KEY-----"),
     "vmkube:ssh.privateKey: must be set as a secret"),
    ("bastion without pinned host key", "prod", deleter("ssh.bastion.hostKey"),
     "vmkube:ssh.bastion.hostKey: is required"),
    ("bastion host key malformed", "prod", setter("ssh.bastion.hostKey", "AAAAC3Nza"),
     "vmkube:ssh.bastion.hostKey: must be the bastion's public host key"),
    ("vsphere without template", "dev", deleter("vsphere.template"),
     "vmkube:vsphere.template: is required"),
    ("vsphere without datastore", "dev", deleter("vsphere.datastore"),
     "vmkube:vsphere.datastore: is required"),
    ("vsphere without cluster or pool", "dev", deleter("vsphere.cluster"),
     "vmkube:vsphere.cluster: is required: set cluster or resourcePool"),
    ("vsphere without password", "dev", deleter("vsphere.password"),
     "vmkube:vsphere.password: is required"),
    ("vsphere insecure with a CA", "prod", setter("vsphere.insecure", True),
     "vmkube:vsphere.insecure: true turns TLS verification off"),
    ("vsphere bad thumbprint", "dev", setter("vsphere.thumbprint", "not-a-thumbprint"),
     "vmkube:vsphere.thumbprint: must be a SHA-1, SHA-256 or SHA-512 fingerprint"),
    ("vsphere section on libvirt", "local", setter("vsphere", {"server": "vc"}),
     "vmkube:vsphere: is set but vmkube:hypervisor is 'libvirt'"),
    ("libvirt domain type", "local", setter("libvirt.domainType", "xen"),
     "vmkube:libvirt.domainType: must be one of qemu, kvm (got 'xen')"),
    ("unknown app", "local", setter("workloads.helo", {"replicas": 1}),
     "vmkube:workloads.helo: unknown app; workloads/ has: hello"),
    ("negative replicas", "local", setter("workloads.hello", {"replicas": -1}),
     "vmkube:workloads.hello.replicas: must be at least 0 (got -1)"),
    ("unknown workload override", "local", setter("workloads.hello", {"replicaCount": 2}),
     "vmkube:workloads.hello.replicaCount: unknown key"),
    ("bad workload resources", "local", setter("workloads.hello", {"resources": {"limits": {"cpu": "lots"}}}),
     "vmkube:workloads.hello.resources.limits.cpu: must be a Kubernetes quantity"),
    ("snapshots kept: none", "local", setter("etcd", {"snapshots": {"keep": 0}}),
     "vmkube:etcd.snapshots.keep: must be at least 1 (got 0)"),
    ("snapshots misspelt", "local", setter("etcd", {"snapshot": {"keep": 3}}),
     "vmkube:etcd.snapshot: unknown key"),
    ("renewal window of none", "local", setter("pki", {"renewBeforeDays": 0}),
     "vmkube:pki.renewBeforeDays: must be at least 1 (got 0)"),
    ("renewal window past a year", "local", setter("pki", {"renewBeforeDays": 400}),
     "vmkube:pki.renewBeforeDays: must be at most 365 (got 400)"),
    ("renewal window as text", "local", setter("pki", {"renewBeforeDays": "90d"}),
     "vmkube:pki.renewBeforeDays: must be a whole number"),
    ("renewal key misspelt", "local", setter("pki", {"renewBefore": 30}), "vmkube:pki.renewBefore: unknown key"),
]


@pytest.mark.parametrize("case,base,mutate,expected", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_config_names_its_key(case, base, mutate, expected):
    raw = example_raw(base)
    mutate(raw)
    secrets = {"vsphere"} if base != "local" else set()
    with pytest.raises(ConfigError) as err:
        config.load(raw, stack=base, secret_keys=secrets, apps=APPS)
    assert any(p.startswith(expected) for p in err.value.problems), err.value.problems


def test_vsphere_password_in_plaintext_is_refused():
    with pytest.raises(ConfigError) as err:
        config.load(example_raw("dev"), stack="dev", secret_keys=set(), apps=APPS)
    assert err.value.problems == [
        "vmkube:vsphere.password: must be set as a secret: "
        "pulumi config set --secret --path 'vmkube:vsphere.password' <value>"]


def test_unreadable_private_key_does_not_echo_it():
    raw = example_raw("local")
    raw["ssh"] = {"privateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWJ5dGVz\n-----END OPENSSH PRIVATE KEY-----"}
    with pytest.raises(ConfigError) as err:
        load(raw, secrets={"ssh"})
    assert err.value.problems == ["vmkube:ssh.privateKey: is not an unencrypted PEM or OpenSSH private key"]
    assert "c2VjcmV0" not in str(err.value)


def test_a_workloads_stack_names_its_cluster_stack_and_holds_nothing_else():
    spec = config.load_apps_stack({"clusterStack": "organization/vmkube/prod", "workloads": {"hello": {"replicas": 4}}},
                                  apps=["hello"])
    assert spec.cluster_stack == "organization/vmkube/prod"
    assert spec.workloads == (config.WorkloadSpec(app="hello", replicas=4),)
    with pytest.raises(ConfigError) as err:
        config.load_apps_stack({"clusterStack": "a/b/c/d", "hypervisor": "libvirt",
                                "workloads": {"nope": {}, "hello": {"replicas": -1}}}, apps=["hello"])
    assert err.value.problems == [
        "vmkube:clusterStack: must name a stack: stack, project/stack or organization/project/stack (got 'a/b/c/d')",
        "vmkube:workloads.hello.replicas: must be at least 0 (got -1)",
        "vmkube:workloads.nope: unknown app; workloads/ has: hello",
        "vmkube:hypervisor: not used by a workloads stack (vmkube:clusterStack is set): the cluster stack holds it",
    ]


def test_apps_need_kubernetes():
    with pytest.raises(ConfigError) as err:
        config.load({"hypervisor": "libvirt", "kubernetes": {"install": False}, "workloads": {"hello": {}}},
                    stack="t", apps=["hello"])
    assert err.value.problems == ["vmkube:workloads: apps need Kubernetes, but vmkube:kubernetes.install is false"]
