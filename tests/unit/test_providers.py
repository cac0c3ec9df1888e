"""Each dynamic provider's check and diff, with the inputs a preview really sends.

During a preview the engine hands a provider pulumi's Unknown wherever an input
waits on another resource (a pool whose VM was deleted by hand has a pending
update, so every node address is unknown). The rule for every provider: an
unknown input is a change (an update, never a replacement by itself) and nothing
crashes on it. The engine runs the same providers in tests/engine."""

from __future__ import annotations

from pulumi.output import Unknown

from tests.unit.test_contracts import INPUTS, NODE
from vmkube.contracts import BootstrapState, NodeStatus, PoolSpec
from vmkube.stack.bootstrap import BootstrapProvider
from vmkube.stack.keys import SshKeyProvider
from vmkube.stack.vmpool import LeavingVmsProvider, VmPoolProvider, drifted

NEWS = {"owner": "o", "image": "img", "names": ["a", "b"], "cpus": 2, "memoryMb": 2048, "diskGb": 20,
        "sshUser": "vmkube", "sshPublicKey": "ssh-ed25519 AAAA",
        "hypervisor": {"kind": "libvirt", "uri": "qemu:///system", "storagePool": "default"}}


def olds(**kw):
    vms = [{"name": n, "power": "on", "cpus": 2, "memoryMb": 2048, "diskGb": 20} for n in ("a", "b")]
    return {**NEWS, "vms": vms, **kw}


# -- VmPool -----------------------------------------------------------------------------------

def test_pool_diff_no_change_when_everything_matches():
    d = VmPoolProvider().diff("o", olds(), NEWS)
    assert d.changes is False and d.replaces == []


def test_pool_diff_updates_in_place_for_sizes_and_replaces_for_image():
    d = VmPoolProvider().diff("o", olds(), {**NEWS, "cpus": 4})
    assert d.changes is True and d.replaces == []
    d = VmPoolProvider().diff("o", olds(), {**NEWS, "image": "img2"})
    assert d.replaces == ["image"] and d.delete_before_replace is True
    moved = {**NEWS, "hypervisor": {**NEWS["hypervisor"], "uri": "qemu+ssh://other/system"}}
    assert VmPoolProvider().diff("o", olds(), moved).replaces == ["hypervisor"]


def test_pool_diff_updates_for_anti_affinity_and_other_connection_settings():
    assert VmPoolProvider().diff("o", olds(), {**NEWS, "antiAffinity": True}).changes is True
    vs = {"kind": "vsphere", "server": "vc", "datacenter": "DC0", "folder": "f", "user": "u", "password": "p"}
    before = {**olds(), "hypervisor": vs}
    d = VmPoolProvider().diff("o", before, {**NEWS, "hypervisor": {**vs, "customAttributes": {"team": "a"}}})
    assert d.changes is True and d.replaces == []
    assert VmPoolProvider().diff("o", before, {**NEWS, "hypervisor": vs}).changes is False


def test_pool_diff_sees_drift_found_by_refresh():
    news = PoolSpec.from_props(NEWS)
    gone = olds(vms=olds()["vms"][:1])
    assert drifted(gone, news)
    off = olds()
    off["vms"][1]["power"] = "off"
    assert drifted(off, news)
    resized = olds()
    resized["vms"][0]["memoryMb"] = 1024
    assert drifted(resized, news)
    assert not drifted(olds(), news)


def test_pool_check_refuses_a_shrinking_disk_naming_the_key():
    result = VmPoolProvider().check({**NEWS, "configPath": "vmkube:workerPools[0]"},
                                    {**NEWS, "diskGb": 10, "configPath": "vmkube:workerPools[0]"})
    [failure] = result.failures
    assert failure.property == "diskGb"
    assert failure.reason.startswith("vmkube:workerPools[0].diskGb: disks cannot shrink (from 20 to 10 GB)")


def test_pool_check_refuses_resizing_the_control_plane():
    cp = {**NEWS, "configPath": "vmkube:controlPlane"}
    [failure] = VmPoolProvider().check(cp, {**cp, "names": ["a", "b", "c"]}).failures
    assert failure.reason.startswith("vmkube:controlPlane.count: the control plane of an existing cluster keeps")


def test_pool_with_unknown_inputs_is_an_update_not_a_crash_nor_a_replacement():
    provider = VmPoolProvider()
    for key in ("sshPublicKey", "names", "cpus", "diskGb", "hypervisor", "image"):
        news = {**NEWS, key: Unknown()}
        assert provider.check(olds(), news).failures == [], key
        d = provider.diff("o", olds(), news)
        assert d.changes is True or key == "sshPublicKey", key
        assert "hypervisor" not in d.replaces, key  # unknown settings may name the same place
    # A first preview: no olds at all.
    assert provider.check({}, {**NEWS, "sshPublicKey": Unknown()}).failures == []


# -- LeavingVms -----------------------------------------------------------------------------

POOL = {"hypervisor": NEWS["hypervisor"], "owner": "o"}


def test_leaving_vms_act_only_on_vms_not_removed_before():
    provider = LeavingVmsProvider()
    assert provider.diff("l", {"pools": [], "removed": ["x"]}, {"pools": [{**POOL, "leaving": ["x"]}]}).changes is False
    assert provider.diff("l", {"pools": [], "removed": []}, {"pools": [{**POOL, "leaving": ["x"]}]}).changes is True


def test_leaving_vms_with_unknown_inputs_are_a_change():
    provider = LeavingVmsProvider()
    assert provider.diff("l", {"pools": [], "removed": []}, {"pools": Unknown()}).changes is True
    assert provider.diff("l", {"pools": [], "removed": []}, {"pools": [{**POOL, "leaving": Unknown()}]}).changes


# -- Bootstrap -------------------------------------------------------------------------------

def bootstrap_olds(ready: bool = True) -> dict:
    status = (NodeStatus(NODE.name, ready, "v1.34.4", NODE.ip),)
    return {**INPUTS.to_props(), **BootstrapState(node_status=status).to_props()}


def test_bootstrap_diff_is_quiet_when_converged_and_wakes_for_a_node_not_ready():
    provider = BootstrapProvider()
    assert provider.diff("c", bootstrap_olds(), INPUTS.to_props()).changes is False
    assert provider.diff("c", bootstrap_olds(ready=False), INPUTS.to_props()).changes is True
    assert provider.diff("c", bootstrap_olds(), {**INPUTS.to_props(), "version": "1.34.5"}).changes is True


def test_bootstrap_diff_with_unknown_nodes_is_a_change_not_a_crash():
    # What `make up` hit after a worker's VM was deleted by hand: nodes unknown in the preview.
    provider = BootstrapProvider()
    news = {**INPUTS.to_props(), "nodes": Unknown()}
    assert provider.diff("c", bootstrap_olds(), news).changes is True
    partly = {**INPUTS.to_props(), "nodes": [{**NODE.to_props(), "ip": Unknown()}]}
    assert provider.diff("c", bootstrap_olds(), partly).changes is True
    for key in ("ssh", "binaries", "version", "endpoint"):
        assert provider.diff("c", bootstrap_olds(), {**INPUTS.to_props(), key: Unknown()}).changes is True, key


def test_bootstrap_diff_of_a_state_without_a_newer_key_is_no_change():
    plain = {**INPUTS.to_props(), "endpoint": ""}
    old = {**plain, **BootstrapState(node_status=(NodeStatus(NODE.name, True),)).to_props()}
    del old["endpoint"]
    assert BootstrapProvider().diff("c", old, plain).changes is False


# -- SshKey ------------------------------------------------------------------------------------

def test_the_stack_key_never_changes_once_made():
    assert SshKeyProvider().diff("k", {"comment": "a"}, {"comment": Unknown()}).changes is False
