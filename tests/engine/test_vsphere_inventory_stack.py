"""A VMs-only vSphere stack with static addresses, through the real engine, on the
arranged vcsim inventory (tests/fixtures/vcsim.py ``arrange``: datacenter DC1 inside
folder F0, cluster prod/DC1_C0 of three hosts, template templates/debian-12, a team
folder holding a VM that is not vmkube's).

`up` clones every node with its static address in guestinfo.metadata and keeps the
control planes apart with a DRS anti-affinity rule; a new address range for an existing
pool previews as that pool's replacement (and nothing else); `destroy` removes the rule
and the folder levels vmkube made, and leaves the team folder and its VM. No guest agent
runs: a static node must not wait for VMware Tools to report an IP. vcsim stores the rule
but places no VM by it (tests/integration/test_vsphere_inventory.py says what else it
does not simulate), so the test shows the rule, not the hosts the VMs run on."""

from __future__ import annotations

import base64

import pytest
import yaml
from pulumi import automation as auto
from pyVmomi import vim

from tests.fixtures.vcsim import DC1, DC1_CLUSTER, DC1_DATASTORE, DC1_PORTGROUP, DEBIAN, FOREIGN_VM, PASSWORD, \
    TEAM_FOLDER, USER

pytestmark = pytest.mark.engine
QUIET = {"on_output": lambda _line: None}
FOLDER = f"{TEAM_FOLDER}/vmkube/inv"   # teams/platform exists; vmkube/inv does not
RULE = "vmkube/vmkube/inv/inv-control-plane"


def stack_config(sim) -> dict:
    return {
        "hypervisor": "vsphere",
        # The datacenter by its unique name, everything else by a path inside it.
        "vsphere": {"server": sim.server, "user": USER, "datacenter": "DC1", "cluster": DC1_CLUSTER,
                    "datastore": DC1_DATASTORE, "network": DC1_PORTGROUP, "template": DEBIAN,
                    "folder": FOLDER, "caFile": str(sim.ca.ca_path)},
        "network": {"mode": "static", "subnet": "10.20.0.0/24", "gateway": "10.20.0.1",
                    "dnsServers": ["10.20.0.2"], "searchDomains": ["dc.example"]},
        "controlPlane": {"count": 3, "cpus": 2, "memoryMb": 2048, "diskGb": 20, "addresses": "10.20.0.10-10.20.0.12"},
        "workerPools": [{"name": "general", "count": 2, "cpus": 2, "memoryMb": 2048, "diskGb": 20,
                         "addresses": ["10.20.0.20", "10.20.0.30"]}],
        "kubernetes": {"install": False},  # the VMs only: vcsim's VMs run no OS
    }


class Inventory:
    """The simulator as an administrator sees it, for the assertions."""

    def __init__(self, sim):
        self.content = sim.connect().RetrieveContent()

    def find(self, path: str):
        return self.content.searchIndex.FindByInventoryPath(path)

    def vms(self, folder: str) -> dict[str, vim.VirtualMachine]:
        found = self.find(f"{DC1}/vm/{folder}")
        return {c.name: c for c in found.childEntity if isinstance(c, vim.VirtualMachine)} if found else {}

    def rules(self) -> dict[str, list[str]]:
        rules = self.find(f"{DC1}/host/{DC1_CLUSTER}").configurationEx.rule or []
        return {r.name: sorted(vm.name for vm in r.vm) for r in rules}


def network_of(vm: vim.VirtualMachine) -> tuple[dict, str]:
    """The cloud-init network document in the VM's guestinfo.metadata, and its NIC's MAC."""
    extra = {o.key: str(o.value) for o in vm.config.extraConfig}
    meta = yaml.safe_load(base64.b64decode(extra["guestinfo.metadata"]))
    nic = next(d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard))
    return meta["network"], nic.macAddress.lower()


def expected_network(address: str, mac: str) -> dict:
    return {"version": 2, "ethernets": {"eth0": {
        "match": {"macaddress": mac}, "set-name": "eth0", "dhcp4": False, "addresses": [f"{address}/24"],
        "gateway4": "10.20.0.1", "nameservers": {"addresses": ["10.20.0.2"], "search": ["dc.example"]}}}}


def test_a_static_stack_on_an_unusual_inventory(vcsim_inventory, make_stack):
    inv = Inventory(vcsim_inventory)
    stack = make_stack("inv", config=stack_config(vcsim_inventory), secrets={"vsphere.password": PASSWORD})

    up = stack.up(**QUIET)
    # Stack, Cluster, SshKey, and a NodePool with its VmPool for each of the two pools.
    assert up.summary.resource_changes == {"create": 7}
    addresses = {"inv-cp-1": "10.20.0.10", "inv-cp-2": "10.20.0.11", "inv-cp-3": "10.20.0.12",
                 "inv-general-1": "10.20.0.20", "inv-general-2": "10.20.0.30"}
    assert {n["name"]: n["ip"] for n in up.outputs["nodes"].value} == addresses
    vms = inv.vms(FOLDER)
    assert sorted(vms) == sorted(addresses)
    for name, vm in vms.items():
        network, mac = network_of(vm)
        assert network == expected_network(addresses[name], mac), name
        assert inv.find(f"{DC1}/host/{DC1_CLUSTER}/Resources") == vm.resourcePool, name
    # The control planes are spread; the worker pool did not ask to be.
    assert inv.rules() == {RULE: ["inv-cp-1", "inv-cp-2", "inv-cp-3"]}

    # A new range for the existing worker pool: its VMs must be replaced (cloud-init applies
    # an address on the first boot only), deleted first, and nothing else changes.
    stack.set_config("vmkube:workerPools[0].addresses", auto.ConfigValue("10.20.0.40-10.20.0.41"), path=True)
    steps: list[tuple[str, str, list[str]]] = []
    preview = stack.preview(on_event=lambda e: _step(e, steps), **QUIET)
    assert preview.change_summary == {"same": 6, "replace": 1}
    # (The stack's default dynamic provider shows an update too: it is given the stack's
    # config, which changed. It is not a resource of the stack and makes no change.)
    changed = [(op, urn.rsplit("::", 1)[-1]) for op, urn, _keys in steps
               if op != "same" and "::pulumi:providers:" not in urn]
    assert changed == [("delete-replaced", "inv-general-vms"), ("replace", "inv-general-vms"),
                       ("create-replacement", "inv-general-vms")], steps
    # The replacement's reason, as `pulumi preview --diff` shows it: the addresses, not the network.
    assert [keys for op, _urn, keys in steps if op == "replace"] == [["addresses"]], steps
    assert sorted(inv.vms(FOLDER)) == sorted(addresses)  # a preview touches nothing

    replaced = stack.up(**QUIET)
    assert replaced.summary.resource_changes == {"same": 6, "replace": 1}
    for name, address in (("inv-general-1", "10.20.0.40"), ("inv-general-2", "10.20.0.41")):
        network, mac = network_of(inv.vms(FOLDER)[name])
        assert network == expected_network(address, mac), name

    stack.destroy(**QUIET)
    assert inv.rules() == {}
    assert inv.find(f"{DC1}/vm/{TEAM_FOLDER}/vmkube") is None  # both levels vmkube made: gone
    assert sorted(inv.vms(TEAM_FOLDER)) == [FOREIGN_VM]        # not vmkube's: left as it was


def _step(event: auto.EngineEvent, steps: list) -> None:
    """Each resource step of the preview: (op, URN, the inputs that force a replacement)."""
    pre = event.resource_pre_event
    if pre is not None:
        meta = pre.metadata
        steps.append((meta.op.value, meta.urn, sorted(meta.keys or [])))
