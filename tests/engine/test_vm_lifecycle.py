"""VM lifecycle through the real engine: up, up again (no changes), a VM
deleted or powered off behind Pulumi's back (refresh sees it, up repairs it),
resize in place, template change (replace), a refused disk shrink, destroy
(nothing left) — on vcsim, and on real libvirt + QEMU."""

from __future__ import annotations

import json
import time

from pathlib import Path

import pytest
from pulumi import automation as auto

from tests.fixtures.libvirt import leftovers
from tests.fixtures.vcsim import PASSWORD, TEMPLATE, USER

pytestmark = pytest.mark.engine
QUIET = {"on_output": lambda _line: None}


def vsphere_config(sim, **over) -> dict:
    cfg = {
        "hypervisor": "vsphere",
        "vsphere": {"server": sim.server, "user": USER, "datacenter": "DC0", "cluster": "DC0_C0",
                    "datastore": "LocalDS_0", "network": "VM Network", "template": TEMPLATE,
                    "caFile": str(sim.ca.ca_path)},
        "controlPlane": {"count": 1, "cpus": 2, "memoryMb": 2048, "diskGb": 20},
        "workerPools": [{"name": "general", "count": 2, "cpus": 2, "memoryMb": 2048, "diskGb": 20}],
        "kubernetes": {"install": False},  # the VMs' lifecycle only; vcsim VMs run no OS
    }
    cfg.update(over)
    return cfg


def state_text(engine_env, stack: str) -> str:
    root = Path(engine_env["PULUMI_BACKEND_URL"].removeprefix("file://"))
    return (root / ".pulumi" / "stacks" / "vmkube" / f"{stack}.json").read_text()


def vmkube_vms(sim) -> dict:
    return {n: vm for n, vm in sim.vms().items() if n.startswith("vc-")}


def test_vsphere_lifecycle_on_vcsim(vcsim, guest_agent, make_stack, engine_env):
    stack = make_stack("vc", config=vsphere_config(vcsim), secrets={"vsphere.password": PASSWORD})

    up = stack.up(**QUIET)
    assert up.summary.resource_changes == {"create": 7}
    nodes = up.outputs["nodes"].value
    assert [(n["name"], n["power"]) for n in nodes] == [("vc-cp-1", "on"), ("vc-general-1", "on"),
                                                        ("vc-general-2", "on")]
    assert all(n["ip"] == guest_agent.assigned[n["name"]] for n in nodes)
    assert set(up.outputs["hostKeys"].value) == {"vc-cp-1", "vc-general-1", "vc-general-2"}
    public = up.outputs["sshPublicKey"].value
    assert public.startswith("ssh-ed25519 ") and public.endswith(" vmkube-vc")
    # The vCenter password, the generated SSH key and the host keys are in state only as ciphertext.
    state = json.loads(state_text(engine_env, "vc"))["checkpoint"]["latest"]["resources"]
    key = [r for r in state if r["type"].endswith("vmkube:SshKey")][0]
    assert set(key["outputs"]["private_key"]) == {"4dabf18193072939515e22adb298388d", "ciphertext"}
    assert PASSWORD not in state_text(engine_env, "vc")
    assert "PRIVATE KEY" not in state_text(engine_env, "vc")

    again = stack.up(**QUIET)
    assert again.summary.resource_changes == {"same": 7}
    assert again.outputs["sshPublicKey"].value == public  # kept, not regenerated

    # Behind Pulumi's back: one worker deleted, the control plane powered off.
    gone = vmkube_vms(vcsim)["vc-general-2"]
    gone.PowerOffVM_Task()
    _until(lambda: gone.runtime.powerState == "poweredOff")
    gone.Destroy_Task()
    vmkube_vms(vcsim)["vc-cp-1"].PowerOffVM_Task()
    _until(lambda: "vc-general-2" not in vmkube_vms(vcsim))
    refreshed = stack.refresh(**QUIET)
    assert refreshed.summary.resource_changes.get("update") == 2
    repaired = stack.up(**QUIET)
    assert repaired.summary.resource_changes == {"same": 5, "update": 2}
    vms = vmkube_vms(vcsim)
    assert sorted(vms) == ["vc-cp-1", "vc-general-1", "vc-general-2"]
    assert all(vm.runtime.powerState == "poweredOn" for vm in vms.values())

    # Resize in place: same VMs, new sizes.
    stack.set_config("vmkube:workerPools[0].memoryMb", auto.ConfigValue("4096"), path=True)
    preview = stack.preview(**QUIET)
    assert preview.change_summary == {"same": 6, "update": 1}
    stack.up(**QUIET)
    assert {vm.config.hardware.memoryMB for n, vm in vmkube_vms(vcsim).items() if "general" in n} == {4096}

    # A disk never shrinks: preview refuses, naming the key.
    stack.set_config("vmkube:workerPools[0].diskGb", auto.ConfigValue("10"), path=True)
    lines: list[str] = []
    with pytest.raises(auto.errors.CommandError):
        stack.preview(on_output=lines.append)
    assert "vmkube:workerPools[0].diskGb: disks cannot shrink (from 20 to 10 GB)" in "\n".join(lines), lines
    stack.set_config("vmkube:workerPools[0].diskGb", auto.ConfigValue("20"), path=True)

    # Template change: the pools are replaced.
    other = vcsim.connect().RetrieveContent().searchIndex.FindByInventoryPath("DC0/vm/DC0_H0_VM1")
    other.PowerOffVM_Task()
    _until(lambda: other.runtime.powerState == "poweredOff")
    other.MarkAsTemplate()
    stack.set_config("vmkube:vsphere.template", auto.ConfigValue("DC0_H0_VM1"), path=True)
    replaced = stack.up(**QUIET)
    assert replaced.summary.resource_changes == {"same": 5, "replace": 2}
    assert {vm.config.extraConfig and dict((o.key, o.value) for o in vm.config.extraConfig)["vmkube.image"]
            for vm in vmkube_vms(vcsim).values()} == {"DC0_H0_VM1"}

    stack.destroy(**QUIET)
    assert vmkube_vms(vcsim) == {}


def _until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def test_libvirt_lifecycle_on_real_qemu(system_libvirt, node_image, vm_prefix, make_stack):
    import libvirt

    cfg = {"name": vm_prefix, "hypervisor": "libvirt", "libvirt": {"uri": system_libvirt},
           "kubernetes": {"install": False},  # the VMs' lifecycle only: tests/e2e bootstraps Kubernetes
           "controlPlane": {"count": 1, "cpus": 1, "memoryMb": 1536, "diskGb": 6},
           "workerPools": [{"name": "w", "count": 1, "cpus": 1, "memoryMb": 1024, "diskGb": 6}]}
    stack = make_stack("lv", config=cfg)
    try:
        up = stack.up(**QUIET)
        assert up.summary.resource_changes == {"create": 7}
        ips = {n["name"]: n["ip"] for n in up.outputs["nodes"].value}
        assert set(ips) == {f"{vm_prefix}-cp-1", f"{vm_prefix}-w-1"} and all(ips.values())

        assert stack.up(**QUIET).summary.resource_changes == {"same": 7}

        conn = libvirt.open(system_libvirt)
        try:
            dom = conn.lookupByName(f"{vm_prefix}-w-1")
            dom.destroy()
            dom.undefine()
        finally:
            conn.close()
        assert stack.refresh(**QUIET).summary.resource_changes.get("update") == 1
        repaired = stack.up(**QUIET)
        assert repaired.summary.resource_changes == {"same": 6, "update": 1}
        assert all(n["ip"] for n in repaired.outputs["nodes"].value)
    finally:
        stack.destroy(**QUIET)
    assert leftovers(system_libvirt, vm_prefix) == []


def test_a_provider_error_reads_as_vmkubes_message(vcsim, make_stack):
    """A refused vCenter login fails `up` with vmkube's message and hint, not a page of Python frames."""
    stack = make_stack("vc-denied", config=vsphere_config(vcsim), secrets={"vsphere.password": "not-the-password"})
    lines: list[str] = []
    with pytest.raises(auto.errors.CommandError) as failed:
        stack.up(on_output=lines.append)
    text = "\n".join(lines) + str(failed.value)
    refused = (f"vCenter {vcsim.server} (vmkube:vsphere.server): login refused for 'vmkube'; "
               "check vmkube:vsphere.user and vmkube:vsphere.password")
    # What the progress view shows on the failing resource's line, and the diagnostics.
    assert f"vc-denied-control-plane-vms **creating failed** error: {refused}" in text, text
    assert f"    error: {refused}" in text, text
    assert "Traceback" not in text and "File \"" not in text, text
    assert "not-the-password" not in text
    assert vmkube_vms(vcsim) == {}


def test_vsphere_folders_anti_affinity_and_attributes_through_the_engine(vcsim, guest_agent, make_stack):
    """A stack whose VMs go to a folder path that exists only in part, with three control
    planes and a spread worker pool on vcsim's three-host cluster, and custom attributes:
    `up` makes the missing folder levels, one anti-affinity rule per spread pool and the
    attributes on every VM; `destroy` leaves no rule and only the folders vmkube did not
    make (vcsim keeps the rules but places no VM by them)."""
    admin = vcsim.connect().RetrieveContent()
    find = admin.searchIndex.FindByInventoryPath
    platform = find("DC0/vm").CreateFolder("platform")
    platform.MoveIntoFolder_Task([find("DC0/vm/DC0_C0_RP0_VM1")])
    _until(lambda: find("DC0/vm/platform/DC0_C0_RP0_VM1") is not None)
    cluster = find("DC0/host/DC0_C0")
    cfg = vsphere_config(vcsim, controlPlane={"count": 3, "cpus": 2, "memoryMb": 2048, "diskGb": 20},
                         workerPools=[{"name": "general", "count": 2, "cpus": 2, "memoryMb": 2048, "diskGb": 20,
                                       "antiAffinity": True},
                                      {"name": "batch", "count": 2, "cpus": 2, "memoryMb": 2048, "diskGb": 20}])
    cfg["vsphere"].update(folder="platform/vmkube/vc", customAttributes={"team": "platform"})
    stack = make_stack("vc", config=cfg, secrets={"vsphere.password": PASSWORD})

    stack.up(**QUIET)
    folder = find("DC0/vm/platform/vmkube/vc")
    assert sorted(vm.name for vm in folder.childEntity) == [
        "vc-batch-1", "vc-batch-2", "vc-cp-1", "vc-cp-2", "vc-cp-3", "vc-general-1", "vc-general-2"]
    rules = {r.name: sorted(vm.name for vm in r.vm) for r in cluster.configurationEx.rule or []}
    assert rules == {"vmkube/vmkube/vc/vc-control-plane": ["vc-cp-1", "vc-cp-2", "vc-cp-3"],
                     "vmkube/vmkube/vc/vc-general": ["vc-general-1", "vc-general-2"]}
    team = next(f.key for f in admin.customFieldsManager.field if f.name == "team")
    assert {vm.name: {v.key: v.value for v in vm.customValue}.get(team) for vm in folder.childEntity} == {
        vm.name: "platform" for vm in folder.childEntity}

    stack.destroy(**QUIET)
    assert not cluster.configurationEx.rule
    assert find("DC0/vm/platform/vmkube") is None
    assert [vm.name for vm in find("DC0/vm/platform").childEntity] == ["DC0_C0_RP0_VM1"]
