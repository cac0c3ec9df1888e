"""The vSphere backend (pyvmomi) against govmomi's vcsim: the real SOAP API,
a simulated inventory. vcsim runs no guest OS; ``guest_agent`` reports IPs
the way VMware Tools would."""

from __future__ import annotations

import base64

import pytest
import yaml
from pyVmomi import vim

from vmkube.config import Secret, VsphereSpec
from vmkube.contracts import PoolSpec
from vmkube.vms import pool
from vmkube.errors import HypervisorError, NodesFailed
from vmkube.vms.vsphere import VsphereHypervisor
from vmkube.sshkeys import generate_ed25519
from tests.fixtures.vcsim import PASSWORD, TEMPLATE, USER

OWNER = "vmkube/vmkube/t/general"
KEY = generate_ed25519()


def connect(sim, **kw) -> VsphereHypervisor:
    settings = dict(server=sim.server, user=USER, password=Secret(PASSWORD), datacenter="DC0",
                    datastore="LocalDS_0", network="VM Network", template=TEMPLATE, cluster="DC0_C0",
                    ca_file=str(sim.ca.ca_path))
    return VsphereHypervisor(VsphereSpec(**{**settings, **kw}))


def spec(names, **kw) -> PoolSpec:
    base = dict(owner=OWNER, names=tuple(names), cpus=2, memory_mb=2048, disk_gb=20, image=TEMPLATE,
                ssh_user="vmkube", ssh_public_key=KEY.public_openssh, config_path="vmkube:workerPools[0]")
    return PoolSpec(**{**base, **kw})


def test_three_vms_of_different_sizes_with_guestinfo(vcsim, guest_agent):
    hv = connect(vcsim)
    try:
        states = [pool.converge(hv, spec([f"size-{c}"], owner=f"{OWNER}-{c}", cpus=c, memory_mb=1024 * c,
                                         disk_gb=10 * c), ip_timeout=20) for c in (1, 2, 4)]
    finally:
        hv.close()
    vms = [s.vms[0] for s in states]
    assert [(v.cpus, v.memory_mb, v.disk_gb, v.power) for v in vms] == [
        (1, 1024, 10, "on"), (2, 2048, 20, "on"), (4, 4096, 40, "on")]
    assert all(v.ip == guest_agent.assigned[v.name] for v in vms)

    seen = vcsim.vms()["size-2"]
    extra = {o.key: o.value for o in seen.config.extraConfig}
    assert extra["vmkube.owner"] == f"{OWNER}-2"
    assert extra["guestinfo.userdata.encoding"] == "base64"
    user_data = yaml.safe_load(base64.b64decode(extra["guestinfo.userdata"]))
    assert user_data["hostname"] == "size-2"
    assert user_data["ssh_keys"]["ed25519_public"] == states[1].host_keys["size-2"].public_openssh
    assert user_data["users"][0]["ssh_authorized_keys"] == [KEY.public_openssh]
    meta = yaml.safe_load(base64.b64decode(extra["guestinfo.metadata"]))
    assert meta == {"instance-id": "size-2", "local-hostname": "size-2"}
    assert "vmkube" in seen.config.annotation


def test_resize_in_place_and_delete_twice(vcsim, guest_agent):
    hv = connect(vcsim)
    try:
        first = pool.converge(hv, spec(["g-1", "g-2"]), ip_timeout=20)
        ids = {vm.name: vm.id for vm in first.vms}
        bigger = pool.converge(hv, spec(["g-1", "g-2"], cpus=4, memory_mb=4096, disk_gb=30),
                               first.host_keys, ip_timeout=20)
        assert [(v.cpus, v.memory_mb, v.disk_gb, v.power) for v in bigger.vms] == [(4, 4096, 30, "on")] * 2
        assert {vm.name: vm.id for vm in bigger.vms} == ids  # the same VMs, not new ones
        with pytest.raises(NodesFailed, match=r"vmkube:workerPools\[0\]\.diskGb: disks cannot shrink \(from 30 to 10 GB\)"):
            pool.converge(hv, spec(["g-1", "g-2"], cpus=4, memory_mb=4096, disk_gb=10), ip_timeout=20)

        hv.destroy("g-1", OWNER)
        hv.destroy("g-1", OWNER)  # already gone: success
        pool.remove_all(hv, OWNER, ["g-1", "g-2"], TEMPLATE)
    finally:
        hv.close()
    assert not {"g-1", "g-2"} & set(vcsim.vms())


def test_listing_tolerates_a_vm_deleted_while_it_is_read(vcsim, guest_agent):
    """Pools converge in parallel: one pool's VMs may vanish while another lists its own."""
    class Racing(VsphereHypervisor):
        def _read(self, root, pass_through, **kw):
            if pass_through:
                self.destroy("race-2", OWNER)  # gone after the listing's view was made, before it is read
            return super()._read(root, pass_through, **kw)

    hv = connect(vcsim)
    racing = connect(vcsim)
    racing.__class__ = Racing
    try:
        pool.converge(hv, spec(["race-1", "race-2"]), ip_timeout=20)
        assert [vm.name for vm in racing.list_owned(OWNER)] == ["race-1"]
        pool.remove_all(hv, OWNER, ["race-1", "race-2"], TEMPLATE)
    finally:
        hv.close()
        racing.close()
    assert not {"race-1", "race-2"} & set(vcsim.vms())


def test_template_change_is_a_new_vm_from_the_new_template(vcsim, guest_agent):
    """The provider replaces the pool on a template change; here: what that does to the hypervisor."""
    si = vcsim.connect()
    other = si.RetrieveContent().searchIndex.FindByInventoryPath("DC0/vm/DC0_H0_VM1")
    other.PowerOffVM_Task()
    hv = connect(vcsim)
    try:
        old = pool.converge(hv, spec(["r-1"]), ip_timeout=20)
        pool.remove_all(hv, OWNER, ["r-1"], TEMPLATE)
        new = pool.converge(hv, spec(["r-1"], image="DC0_H0_VM1"), old.host_keys, ip_timeout=20)
    finally:
        hv.close()
    # vcsim derives instance UUIDs from the name; the NIC comes from the template.
    assert new.vms[0].mac != old.vms[0].mac
    assert (old.vms[0].image, new.vms[0].image) == (TEMPLATE, "DC0_H0_VM1")


@pytest.mark.parametrize("field,value,key", [
    ("datastore", "NoSuchDS", "vmkube:vsphere.datastore: datastore 'NoSuchDS' not found (have: LocalDS_0)"),
    ("network", "nonet", "vmkube:vsphere.network: network 'nonet' not found"),
    ("datacenter", "DC9", "vmkube:vsphere.datacenter: datacenter 'DC9' not found (have: DC0)"),
    ("cluster", "C9", "vmkube:vsphere.cluster: cluster 'C9' not found"),
    ("folder", "DC0_H0_VM1/x", "vmkube:vsphere.folder: 'DC0_H0_VM1' in datacenter 'DC0' is a VirtualMachine, not a folder"),
])
def test_wrong_inventory_names_the_key_and_creates_nothing(vcsim, field, value, key):
    before = set(vcsim.vms())
    with pytest.raises(HypervisorError) as err:
        connect(vcsim, **{field: value})
    assert str(err.value).startswith(key)
    assert set(vcsim.vms()) == before


def test_wrong_template_names_the_key_and_creates_nothing(vcsim):
    before = set(vcsim.vms())
    hv = connect(vcsim)
    try:
        with pytest.raises(HypervisorError, match="vmkube:vsphere.template: template 'debian-13' not found"):
            pool.converge(hv, spec(["x-1", "x-2"], image="debian-13"), ip_timeout=5)
    finally:
        hv.close()
    assert set(vcsim.vms()) == before


def test_linked_clone_needs_a_snapshot(vcsim):
    hv = connect(vcsim, linked_clone=True)
    try:
        with pytest.raises(HypervisorError, match="vmkube:vsphere.linkedClone: template 'DC0_H0_VM0' has no snapshot"):
            hv.prepare(TEMPLATE)
    finally:
        hv.close()


def test_tls_is_verified_against_the_ca(vcsim):
    connect(vcsim).close()  # the test CA signed vcsim's certificate: accepted
    with pytest.raises(HypervisorError, match=r"certificate not trusted .*vmkube:vsphere.caFile"):
        connect(vcsim, ca_file="")  # the system store does not know the test CA


def test_tls_thumbprint_pins_the_certificate(vcsim):
    connect(vcsim, ca_file="", thumbprint=vcsim.ca.sha256_thumbprint).close()
    connect(vcsim, ca_file="", thumbprint=vcsim.ca.sha1_thumbprint).close()
    wrong = ":".join(["AB"] * 32)
    with pytest.raises(HypervisorError, match="thumbprint"):
        connect(vcsim, ca_file="", thumbprint=wrong)


def test_insecure_is_an_explicit_opt_out(vcsim):
    connect(vcsim, ca_file="", insecure=True).close()


def test_wrong_password_names_the_keys(vcsim):
    with pytest.raises(HypervisorError, match="login refused for 'vmkube'; check vmkube:vsphere.user and vmkube:vsphere.password"):
        connect(vcsim, password=Secret("wrong"))


def test_an_expired_session_is_renewed(vcsim):
    hv = connect(vcsim)
    try:
        manager = hv.si.content.sessionManager
        first = manager.currentSession.key
        admin = vcsim.connect()
        admin.content.sessionManager.TerminateSession([first])
        with pytest.raises(vim.fault.NotAuthenticated):
            manager.currentSession  # noqa: B018 - the old session is dead
        assert hv.find(TEMPLATE).name == TEMPLATE  # transparently logged in again
        assert hv.si.content.sessionManager.currentSession.key != first
    finally:
        hv.close()
