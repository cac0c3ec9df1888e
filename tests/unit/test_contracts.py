"""The typed contracts across the engine: what the components write is what the
providers read, field for field, and a state written before a key existed reads
with that key's default."""

from __future__ import annotations

import json

from vmkube.config import LibvirtSpec, Secret, VsphereSpec
from vmkube.contracts import (UNKNOWN, Bastion, BinarySource, BootstrapInputs, BootstrapState, CertPair,
                              LeavingInputs, NodeInput, NodeStatus, PoolSpec, SshSettings, changed_fields,
                              hypervisor_from_props, hypervisor_to_props, is_unknown)

VSPHERE = VsphereSpec(server="vc:443", user="u", password=Secret("pw"), datacenter="DC0", datastore="ds",
                      network="VM Network", template="", cluster="C0", folder="f", thumbprint="AB:CD")
NODE = NodeInput("c-cp-1", "control-plane", "10.0.0.5", "ssh-ed25519 AAAA", 2048, {"tier": "a"}, ("k=v:NoSchedule",))
INPUTS = BootstrapInputs(
    cluster="c", version="1.34.4", pod_cidr="10.244.0.0/16", service_cidr="10.96.0.0/12", nodes=(NODE,),
    ssh=SshSettings("vmkube", 22, "PRIVATE", 30, Bastion("bastion", 2222, "ops", "ssh-ed25519 BBBB")),
    binaries=BinarySource("url", urls={"kubelet": "https://m/kubelet"}, sha256={"kubelet": "0" * 64},
                          pause="/p", hello="/h"),
    endpoint="api.example.com")


def through_engine(props):
    """What the engine hands back: JSON values, numbers as floats."""
    def floats(v):
        if isinstance(v, bool):
            return v
        if isinstance(v, int):
            return float(v)
        if isinstance(v, dict):
            return {k: floats(x) for k, x in v.items()}
        if isinstance(v, list):
            return [floats(x) for x in v]
        return v
    return floats(json.loads(json.dumps(props)))


def test_bootstrap_inputs_round_trip():
    assert BootstrapInputs.from_props(through_engine(INPUTS.to_props())) == INPUTS
    toolchain = BinarySource("toolchain", dirs=("/k8s", "/etcd"), pause="/p")
    assert BinarySource.from_props(through_engine(toolchain.to_props())) == toolchain
    assert BinarySource.from_props({}) == BinarySource()  # a stack without Kubernetes


def test_bootstrap_state_round_trip():
    state = BootstrapState("kubeconfig", "https://10.0.0.5:6443", {"c-cp-1": "10.244.0.0/24"},
                           {"admin": CertPair("CERT", "KEY")}, (NodeStatus("c-cp-1", True, "v1.34.4", "10.0.0.5"),))
    assert BootstrapState.from_props(through_engine(state.to_props())) == state


def test_pool_spec_and_hypervisor_settings_round_trip():
    for hv in (LibvirtSpec(uri="qemu+ssh://h/system", base_image="/img"), VSPHERE):
        spec = PoolSpec("vmkube/p/s/pool", ("a", "b"), 2, 2048, 20, "img", "vmkube", "ssh-ed25519 AAAA",
                        "vmkube:workerPools[0]", hv, True)
        back = PoolSpec.from_props(through_engine(spec.to_props()))
        # The base image and the template travel as the pool's image, not as connection settings.
        assert back == spec.__class__(**{**spec.__dict__, "hypervisor": _without_image(hv)})
    assert hypervisor_to_props(VSPHERE)["password"] == "pw"
    assert hypervisor_from_props(hypervisor_to_props(VSPHERE)).password.reveal() == "pw"


def _without_image(hv):
    if isinstance(hv, LibvirtSpec):
        return LibvirtSpec(**{**hv.__dict__, "base_image": ""})
    return hv


def test_state_from_before_a_key_existed_reads_with_its_default():
    old = INPUTS.to_props()
    del old["endpoint"]
    del old["ssh"]["connectTimeout"]
    read = BootstrapInputs.from_props(old)
    assert read.endpoint == "" and read.ssh.connect_timeout == 300
    pool = PoolSpec("o", ("a",), 1, 1024, 10, "img", "vmkube", "k").to_props()
    for key in ("keepLeaving", "configPath"):
        del pool[key]
    assert PoolSpec.from_props(pool).keep_leaving is False


def test_unknown_inputs_stay_unknown_and_count_as_changes():
    props = {**INPUTS.to_props(), "nodes": UNKNOWN}
    read = BootstrapInputs.from_props(props)
    assert read.nodes is UNKNOWN and read.cluster == "c"
    assert changed_fields(INPUTS, read) == ["nodes"]
    inner = {**INPUTS.to_props(), "nodes": [{**NODE.to_props(), "ip": UNKNOWN}]}
    assert BootstrapInputs.from_props(inner).nodes is UNKNOWN  # a list holding an unknown is unknown whole
    assert is_unknown({"a": [1, {"b": UNKNOWN}]}) and not is_unknown({"a": [1, {"b": 2}]})
    assert PoolSpec.from_props({**PoolSpec("o", ("a",), 1, 1024, 10, "i", "u", "k").to_props(),
                                "sshPublicKey": UNKNOWN}).ssh_public_key is UNKNOWN
    assert LeavingInputs.from_props({"pools": UNKNOWN}).pools is UNKNOWN
