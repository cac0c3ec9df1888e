"""The libvirt backend and the pool logic against libvirt's test:///default driver:
real libvirt API calls, in process, no daemon and no QEMU (see the fixture for
the one call that driver lacks)."""

from __future__ import annotations

import pytest

from vmkube.vms import pool
from vmkube.errors import HypervisorError, NodesFailed
from vmkube.vms.base import VMRequest
from vmkube.vms.cloudinit import NodeSeed
from vmkube.sshkeys import generate_ed25519

OWNER = "vmkube/vmkube/t/workers"
KEY = generate_ed25519()


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "base.qcow2"
    path.write_bytes(b"\0" * 4096)
    return str(path)


def request(name: str, image: str, owner: str = OWNER, cpus: int = 1, memory_mb: int = 1024, disk_gb: int = 8):
    seed = NodeSeed(name, name, "vmkube", KEY.public_openssh, KEY.private_openssh, KEY.public_openssh)
    return VMRequest(name=name, owner=owner, cpus=cpus, memory_mb=memory_mb, disk_gb=disk_gb, image=image, seed=seed)


def pool_spec(names, image, **kw) -> pool.PoolSpec:
    base = dict(owner=OWNER, names=tuple(names), cpus=1, memory_mb=1024, disk_gb=8, image=image,
                ssh_user="vmkube", ssh_public_key=KEY.public_openssh, config_path="vmkube:workerPools[0]")
    return pool.PoolSpec(**{**base, **kw})


def test_create_find_list_and_destroy(test_driver, image):
    vm = test_driver.create(request("w-1", image, cpus=2, memory_mb=2048))
    assert (vm.name, vm.owner, vm.power, vm.cpus, vm.memory_mb) == ("w-1", OWNER, "on", 2, 2048)
    assert vm.disk_gb == 8 and vm.mac.startswith("52:54:00") and vm.id
    assert test_driver.find("w-1") == vm
    assert [v.name for v in test_driver.list_owned(OWNER)] == ["w-1"]
    assert test_driver.list_owned("vmkube/other") == []
    volumes = {v.name() for v in test_driver.pool.listAllVolumes()}
    assert {"w-1.qcow2", "w-1-seed.iso", "vmkube-base.qcow2"} <= volumes

    test_driver.destroy("w-1", OWNER)
    assert test_driver.find("w-1") is None
    test_driver.destroy("w-1", OWNER)  # already gone: success
    left = {v.name() for v in test_driver.pool.listAllVolumes()}
    assert not {"w-1.qcow2", "w-1-seed.iso"} & left
    test_driver.release(image)
    assert "vmkube-base.qcow2" not in {v.name() for v in test_driver.pool.listAllVolumes()}


def test_a_vm_of_another_owner_is_never_touched(test_driver, image):
    test_driver.create(request("shared-1", image, owner="vmkube/someone/else/pool"))
    with pytest.raises(HypervisorError, match="shared-1: a VM of that name belongs to vmkube/someone"):
        test_driver.create(request("shared-1", image))
    with pytest.raises(HypervisorError, match="shared-1: a VM of that name belongs to vmkube/someone.*not touching it"):
        test_driver.destroy("shared-1", OWNER)
    assert test_driver.find("shared-1").power == "on"


def test_power_and_resize(test_driver, image):
    test_driver.create(request("w-2", image))
    test_driver.power_off("w-2")
    assert test_driver.find("w-2").power == "off"
    test_driver.power_on("w-2")
    test_driver.resize("w-2", cpus=2, memory_mb=3072, disk_gb=8)  # the test driver cannot grow volumes
    vm = test_driver.find("w-2")
    assert (vm.cpus, vm.memory_mb, vm.power) == (2, 3072, "on")
    with pytest.raises(HypervisorError, match=r"w-2: disks cannot shrink \(from 8 to 4 GB\)"):
        test_driver.resize("w-2", cpus=2, memory_mb=3072, disk_gb=4)


def test_wait_ip_reads_the_address(test_driver, image):
    test_driver.create(request("w-3", image))
    assert test_driver.wait_ip("w-3", timeout=5).startswith("192.168.122.")


def test_missing_pool_or_network_names_the_key(test_driver):
    from vmkube.vms.libvirt import LibvirtHypervisor

    uri = test_driver.uri
    with pytest.raises(HypervisorError, match=r"vmkube:libvirt.storagePool: storage pool 'nope'.*tools/host-setup"):
        LibvirtHypervisor(uri, "default", "nope")
    with pytest.raises(HypervisorError, match=r"vmkube:libvirt.network: network 'nope'"):
        LibvirtHypervisor(uri, "nope", "default-pool")
    with pytest.raises(HypervisorError, match=r"cannot connect to libvirt at bogus:///x \(vmkube:libvirt.uri\)"):
        LibvirtHypervisor("bogus:///x", "default", "default-pool")


def test_missing_base_image_names_the_key(test_driver):
    with pytest.raises(HypervisorError, match="vmkube:libvirt.baseImage: 'no-such-image' is neither"):
        pool.converge(test_driver, pool_spec(["w-1"], "no-such-image"), ip_timeout=5)
    assert test_driver.list_owned(OWNER) == []


def test_converge_creates_then_does_nothing_then_scales_and_heals(test_driver, image, caplog):
    caplog.set_level("INFO", logger="vmkube")
    first = pool.converge(test_driver, pool_spec(["w-1", "w-2", "w-3"], image), ip_timeout=5)
    assert [vm.name for vm in first.vms] == ["w-1", "w-2", "w-3"]
    assert all(vm.ip and vm.power == "on" for vm in first.vms)
    assert set(first.host_keys) == {"w-1", "w-2", "w-3"}
    assert sum("creating VM" in r.message for r in caplog.records) == 3
    assert all(r.message.split(":")[0] in ("w-1", "w-2", "w-3") for r in caplog.records)

    caplog.clear()
    again = pool.converge(test_driver, pool_spec(["w-1", "w-2", "w-3"], image), first.host_keys, ip_timeout=5)
    assert [r.message for r in caplog.records if "running at" not in r.message] == []
    assert again.host_keys == first.host_keys

    # Drift: one VM deleted behind our back, one powered off, one resized by hand.
    test_driver.destroy("w-1", OWNER)
    test_driver.power_off("w-2")
    test_driver.resize("w-3", cpus=4, memory_mb=1024, disk_gb=8)
    healed = pool.converge(test_driver, pool_spec(["w-1", "w-2", "w-3"], image), first.host_keys, ip_timeout=5)
    assert [(vm.name, vm.power, vm.cpus) for vm in healed.vms] == [("w-1", "on", 1), ("w-2", "on", 1),
                                                                   ("w-3", "on", 1)]
    assert healed.host_keys["w-1"] == first.host_keys["w-1"]  # same pinned key for the new VM

    smaller = pool.converge(test_driver, pool_spec(["w-1"], image), healed.host_keys, ip_timeout=5)
    assert [vm.name for vm in smaller.vms] == ["w-1"]
    assert [vm.name for vm in test_driver.list_owned(OWNER)] == ["w-1"]
    assert list(smaller.host_keys) == ["w-1"]

    pool.remove_all(test_driver, OWNER, ["w-1"], image)
    assert test_driver.list_owned(OWNER) == []
    assert not [v.name() for v in test_driver.pool.listAllVolumes() if v.name().startswith(("w-", "vmkube-"))]


def test_failure_names_each_node_and_rolls_back_a_first_create(test_driver, image):
    test_driver.create(request("w-2", image, owner="vmkube/someone/else/pool"))
    with pytest.raises(NodesFailed) as err:
        pool.converge(test_driver, pool_spec(["w-1", "w-2", "w-3"], image), rollback=True, ip_timeout=5)
    assert err.value.failures.keys() == {"w-2"}
    assert str(err.value).startswith("converging VMs failed on 1 of 3 nodes:\n  w-2: a VM of that name belongs to")
    assert test_driver.list_owned(OWNER) == []  # w-1 and w-3 were rolled back
    assert test_driver.find("w-2").owner == "vmkube/someone/else/pool"


def volumes(hv) -> list[str]:
    return sorted(v.name() for v in hv.pool.listAllVolumes())


def test_a_cut_off_base_image_upload_is_never_reused(test_driver, image, monkeypatch):
    from vmkube.vms.libvirt import LibvirtHypervisor

    def cut_off(self, vol, data, size):
        raise ConnectionResetError("the upload stream broke")
    with monkeypatch.context() as m:
        m.setattr(LibvirtHypervisor, "_write_volume", cut_off)
        with pytest.raises(ConnectionResetError):
            test_driver.prepare(image)
    assert volumes(test_driver) == []  # neither the final name nor the temporary upload

    # What a killed upload leaves: a temporary volume of a process that is gone. The next run drops it.
    import socket
    stale = f"vmkube-base.qcow2.part-{socket.gethostname()}-999999999"
    test_driver.pool.createXML(f"<volume><name>{stale}</name><capacity>4096</capacity></volume>", 0)
    test_driver.prepare(image)
    assert volumes(test_driver) == ["vmkube-base.qcow2"]


def test_a_rollback_that_fails_reports_the_original_error_too(test_driver, image, monkeypatch):
    test_driver.create(request("w-2", image, owner="vmkube/someone/else/pool"))
    real_destroy = type(test_driver).destroy

    def stuck(self, name, owner):
        if name == "w-1":
            raise HypervisorError("w-1: destroy: the domain is locked")
        return real_destroy(self, name, owner)
    monkeypatch.setattr(type(test_driver), "destroy", stuck)
    with pytest.raises(HypervisorError) as err:
        pool.converge(test_driver, pool_spec(["w-1", "w-2", "w-3"], image), rollback=True, ip_timeout=5)
    text = str(err.value)
    assert text.startswith("converging VMs failed on 1 of 3 nodes:\n  w-2: a VM of that name belongs to"), text
    assert "and rolling back then failed too: rolling back failed on 1 of 2 nodes:\n  w-1: destroy: the domain is " \
           "locked" in text, text


def test_a_static_pool_seeds_each_node_with_its_address_bound_to_the_domains_mac(test_driver, image, monkeypatch):
    """The NoCloud seed of a static node carries network-config naming the MAC the domain
    really has, and the pool reports the static address without any DHCP lease."""
    import io
    import pycdlib
    import yaml
    from vmkube.contracts import StaticNetwork
    from vmkube.vms import libvirt_xml

    written: dict[str, bytes] = {}
    monkeypatch.setattr(type(test_driver), "_write_volume",
                        lambda self, vol, data, size: written.__setitem__(vol.name(), data.read()))
    monkeypatch.setattr(type(test_driver), "_lease_ip", lambda self, dom: "")  # a network without DHCP
    net = StaticNetwork(prefix=24, gateway="192.168.150.1", dns_servers=("192.168.150.1",),
                        search_domains=("lab.example",))
    spec = pool_spec(["s-1", "s-2"], image, network=net, addresses=("192.168.150.20", "192.168.150.21"))
    state = pool.converge(test_driver, spec, ip_timeout=5)
    assert {vm.name: vm.ip for vm in state.vms} == {"s-1": "192.168.150.20", "s-2": "192.168.150.21"}
    assert {vm.name: vm.ip for vm in pool.observe(test_driver, spec)} == {"s-1": "192.168.150.20",
                                                                           "s-2": "192.168.150.21"}
    for vm in state.vms:
        iso = pycdlib.PyCdlib()
        iso.open_fp(io.BytesIO(written[f"{vm.name}-seed.iso"]))
        out = io.BytesIO()
        iso.get_file_from_iso_fp(out, joliet_path="/network-config")
        iso.close()
        eth = yaml.safe_load(out.getvalue())["ethernets"]["eth0"]
        domain_mac = libvirt_xml.parse_domain(test_driver._domain(vm.name).XMLDesc(0)).mac
        assert eth["match"]["macaddress"] == domain_mac == vm.mac
        assert eth["addresses"] == [f"{vm.ip}/24"] and eth["gateway4"] == "192.168.150.1"
    pool.remove_all(test_driver, OWNER, ["s-1", "s-2"], image)


def test_a_node_whose_stable_mac_is_taken_still_gets_a_known_one(test_driver, image):
    """The seed names the MAC before the domain exists: when another domain holds the
    stable one, vmkube picks a free one itself instead of leaving it to libvirt."""
    held = test_driver.create(request("m-1", image)).mac
    mac = test_driver._free_mac(held)
    assert mac != held and mac.startswith("52:54:00:") and len(mac) == 17
    assert test_driver._free_mac("52:54:00:00:00:01") == "52:54:00:00:00:01"  # free: kept
