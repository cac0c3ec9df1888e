"""The Pulumi glue under pulumi.runtime.set_mocks: component tree, names, secrets.

Mocks stand in for the engine here only; the engine itself runs in tests/engine.
Dynamic providers' create() never runs under mocks, so SshKey gets canned outputs.
"""

from __future__ import annotations

import pulumi
import pytest

from vmkube import config
from vmkube.contracts import BinarySource
from vmkube.sshkeys import generate_ed25519
from tests.helpers import example_raw, example_secret_keys

CANNED_PUBLIC = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFakeFakeFake vmkube"


class Recorder(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources.append(args)
        outputs = dict(args.inputs)
        if args.typ.endswith("vmkube:SshKey"):
            outputs.update(public_key=CANNED_PUBLIC, private_key="canned-private")
        if args.typ.endswith("vmkube:VmPool"):
            outputs["vms"] = [{"name": n, "ip": f"10.0.0.{i + 10}", "power": "on", "mac": "", "id": n}
                              for i, n in enumerate(args.inputs["names"])]
            outputs["hostPublicKeys"] = {n: f"ssh-ed25519 AAAA{n}" for n in args.inputs["names"]}
        if args.typ.endswith("vmkube:Bootstrap"):
            outputs["kubeconfig"] = "apiVersion: v1"
            outputs["nodeStatus"] = [{"name": n["name"], "ready": True, "kubeletVersion": "v1.34.4"}
                                     for n in args.inputs["nodes"]]
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


@pytest.fixture
def recorder():
    mocks = Recorder()
    pulumi.runtime.set_mocks(mocks, project="vmkube", stack="t", preview=False)
    yield mocks


# Under mocks nothing is built: the nodes' binaries come from directories named here.
SOURCE = BinarySource(source="toolchain", dirs=("/k8s",), pause="/pause")


def spec_for(stack: str, **ssh) -> config.ClusterSpec:
    raw = example_raw(stack)
    secrets = example_secret_keys(stack)
    if ssh:
        raw.setdefault("ssh", {}).update(ssh)
        secrets.add("ssh")
    if raw.get("hypervisor") == "libvirt":
        raw["libvirt"]["baseImage"] = "debian-12-template"
    return config.load(raw, stack=stack, secret_keys=secrets, apps=["hello"])


def cluster_for(stack: str, **ssh):
    from vmkube.stack import Cluster, ClusterArgs

    spec = spec_for(stack, **ssh)
    return Cluster(spec.name, ClusterArgs.from_spec(spec), binaries=SOURCE)


@pulumi.runtime.test
def test_component_tree_and_names(recorder):
    cluster = cluster_for("prod")

    def check(args):
        nodes = args[0]
        tree = {(r.typ, r.name) for r in recorder.resources}
        assert ("vmkube:index:Cluster", "prod") in tree
        assert {n for t, n in tree if t == "vmkube:index:NodePool"} == {
            "prod-control-plane", "prod-general", "prod-batch"}
        assert ("pulumi-python:dynamic/vmkube:SshKey", "prod-ssh") in tree
        pools = {r.name: r.inputs for r in recorder.resources if r.typ.endswith("vmkube:VmPool")}
        assert set(pools) == {"prod-control-plane-vms", "prod-general-vms", "prod-batch-vms"}
        batch_pool = pools["prod-batch-vms"]
        assert batch_pool["names"] == ["prod-batch-1", "prod-batch-2"]
        assert (batch_pool["cpus"], batch_pool["memoryMb"], batch_pool["diskGb"]) == (8, 32768, 200)
        assert batch_pool["owner"] == "vmkube/vmkube/t/prod-batch"
        assert batch_pool["configPath"] == "vmkube:workerPools[1]"
        assert batch_pool["image"] == "debian-12-cloudinit"  # the stack's template
        assert [n["name"] for n in nodes] == [
            "prod-cp-1", "prod-cp-2", "prod-cp-3", "prod-general-1", "prod-general-2",
            "prod-general-3", "prod-batch-1", "prod-batch-2"]
        batch = nodes[-1]
        assert batch["role"] == "worker" and batch["taints"] == ["dedicated=batch:NoSchedule"]
        assert batch["labels"] == {"tier": "batch"} and batch["memoryMb"] == 32768
        assert batch["ip"] == "10.0.0.11" and batch["power"] == "on"

    # Waiting on every URN means every registration has reached the mocks.
    return pulumi.Output.all(cluster.nodes, cluster.urn, *[p.urn for p in cluster.pools]).apply(check)


@pulumi.runtime.test
def test_children_are_parented_to_the_cluster(recorder):
    cluster = cluster_for("local")

    def check(urns):
        # A child's URN carries its parent's type: ...::vmkube:index:Cluster$<child type>::<name>
        assert urns and all("::vmkube:index:Cluster$" in u for u in urns), urns

    return pulumi.Output.all(*[p.urn for p in cluster.pools]).apply(check)


@pulumi.runtime.test
def test_generated_ssh_key_is_secret(recorder):
    cluster = cluster_for("local")

    def check(args):
        public, private_is_secret, public_is_secret = args
        assert public == CANNED_PUBLIC
        assert private_is_secret is True
        assert public_is_secret is False

    return pulumi.Output.all(cluster.ssh_public_key, cluster.ssh_private_key.is_secret(),
                             cluster.ssh_public_key.is_secret()).apply(check)


@pulumi.runtime.test
def test_configured_ssh_key_stays_secret_and_its_public_half_is_derived(recorder):
    key = generate_ed25519()
    cluster = cluster_for("local", privateKey=key.private_openssh)

    def check(args):
        public, private, private_is_secret = args
        assert public == key.public_openssh
        assert private == key.private_openssh and private_is_secret is True
        assert not any(r.typ.endswith("vmkube:SshKey") for r in recorder.resources)

    return pulumi.Output.all(cluster.ssh_public_key, cluster.ssh_private_key,
                             cluster.ssh_private_key.is_secret()).apply(check)


@pulumi.runtime.test
def test_bootstrap_gets_every_node_with_its_pinned_host_key(recorder):
    cluster = cluster_for("prod")

    def check(args):
        nodes, kubeconfig_is_secret = args
        [boot] = [r for r in recorder.resources if r.typ.endswith("vmkube:Bootstrap")]
        inputs = boot.inputs
        assert inputs["cluster"] == "prod" and inputs["version"] == "1.34.4"
        assert inputs["podCidr"] == "10.32.0.0/14" and inputs["serviceCidr"] == "10.96.0.0/16"
        by_name = {n["name"]: n for n in inputs["nodes"]}
        assert len(by_name) == 8
        assert by_name["prod-cp-2"]["role"] == "control-plane"
        assert by_name["prod-batch-1"]["hostKey"] == "ssh-ed25519 AAAAprod-batch-1"
        assert by_name["prod-batch-1"]["taints"] == ["dedicated=batch:NoSchedule"]
        # The private key inside makes the whole ssh input a secret.
        assert inputs["ssh"][pulumi.runtime.rpc._special_sig_key] == pulumi.runtime.rpc._special_secret_sig
        ssh = inputs["ssh"]["value"]
        assert ssh["bastion"]["user"] == "ops" and ssh["privateKey"] == "canned-private"
        assert kubeconfig_is_secret is True
        assert all(n["ready"] and n["kubeletVersion"] == "v1.34.4" for n in nodes)

    return pulumi.Output.all(cluster.nodes, cluster.kubeconfig.is_secret(), cluster.kubernetes.urn).apply(
        lambda a: check(a[:2]))
