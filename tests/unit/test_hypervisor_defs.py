"""Pure definitions: cloud-init documents, libvirt XML, the seed ISO, pool diffs."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pycdlib
import yaml

from vmkube.contracts import hypervisor_from_props, hypervisor_identity
from vmkube.vms import cloudinit
from vmkube.vms import libvirt_xml as defs
from vmkube.sshkeys import generate_ed25519

USER_KEY = generate_ed25519("operator")
HOST_KEY = generate_ed25519("n1")
SEED = cloudinit.NodeSeed(hostname="dev-cp-1", instance_id="dev-cp-1", user="vmkube",
                          authorized_key=USER_KEY.public_openssh, host_key_private=HOST_KEY.private_openssh,
                          host_key_public=HOST_KEY.public_openssh)


def test_user_data_installs_the_generated_host_key_and_the_user():
    text = cloudinit.user_data(SEED)
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert doc["hostname"] == "dev-cp-1"
    assert doc["ssh_keys"] == {"ed25519_private": HOST_KEY.private_openssh,
                               "ed25519_public": HOST_KEY.public_openssh}
    assert doc["ssh_deletekeys"] is True and doc["ssh_pwauth"] is False and doc["disable_root"] is True
    [user] = doc["users"]
    assert user["name"] == "vmkube" and user["ssh_authorized_keys"] == [USER_KEY.public_openssh]
    assert user["lock_passwd"] is True
    assert doc["locale"] == "C.UTF-8"


def test_seed_repr_hides_the_host_private_key():
    assert HOST_KEY.private_openssh not in repr(SEED)
    assert "PRIVATE" not in repr(HOST_KEY)


def test_meta_data_names_the_instance():
    assert yaml.safe_load(cloudinit.meta_data(SEED)) == {"instance-id": "dev-cp-1",
                                                         "local-hostname": "dev-cp-1"}


def spec(**kw) -> defs.DomainSpec:
    base = dict(name="dev-cp-1", owner="vmkube/p/dev/cp", image="/img", cpus=2, memory_mb=2048,
                disk_path="/pool/dev-cp-1.qcow2", seed_path="/pool/dev-cp-1-seed.iso", network="default")
    return defs.DomainSpec(**{**base, **kw})


def test_domain_xml_for_tcg_caps_the_translation_cache_and_boots_the_kernel():
    dom = ET.fromstring(defs.domain_xml(spec(kernel="/k", initrd="/i", cmdline="root=/dev/vda")))
    assert dom.get("type") == "qemu"
    assert dom.findtext("name") == "dev-cp-1"
    assert dom.find("features/tcg/tb-cache").text == str(defs.TCG_TB_CACHE_MIB)
    assert (dom.findtext("os/kernel"), dom.findtext("os/initrd"), dom.findtext("os/cmdline")) == \
        ("/k", "/i", "root=/dev/vda")
    assert dom.find("memory").attrib == {"unit": "MiB"} and dom.findtext("memory") == "2048"
    assert dom.findtext("vcpu") == "2"
    disks = dom.findall("devices/disk")
    assert [(d.find("source").get("file"), d.find("target").get("dev")) for d in disks] == [
        ("/pool/dev-cp-1.qcow2", "vda"), ("/pool/dev-cp-1-seed.iso", "vdb")]
    assert disks[1].find("readonly") is not None
    assert dom.find("devices/interface/source").get("network") == "default"
    meta = dom.find("metadata/{urn:vmkube:node:1}node")
    assert meta.findtext("{urn:vmkube:node:1}owner") == "vmkube/p/dev/cp"


def test_domain_xml_for_kvm_passes_the_cpu_through_and_boots_from_disk():
    dom = ET.fromstring(defs.domain_xml(spec(domain_type="kvm")))
    assert dom.get("type") == "kvm"
    assert dom.find("features/tcg") is None
    assert dom.find("cpu").get("mode") == "host-passthrough"
    assert dom.find("os/boot").get("dev") == "hd" and dom.find("os/kernel") is None


def test_a_node_keeps_its_mac_when_its_domain_is_defined_again():
    mac = defs.stable_mac("vmkube/vmkube/local/worker", "local-worker-1")
    assert mac == defs.stable_mac("vmkube/vmkube/local/worker", "local-worker-1")
    assert mac != defs.stable_mac("vmkube/vmkube/dev/worker", "local-worker-1")
    assert mac.startswith("52:54:00:") and len(mac.split(":")) == 6
    dom = ET.fromstring(defs.domain_xml(spec(mac=mac)))
    assert dom.find("devices/interface/mac").get("address") == mac
    assert defs.parse_domain(defs.domain_xml(spec(mac=mac))).mac == mac
    assert ET.fromstring(defs.domain_xml(spec())).find("devices/interface/mac") is None


def test_resize_keeps_everything_but_the_sizes():
    before = defs.domain_xml(spec())
    after = ET.fromstring(defs.resized_domain_xml(before, cpus=4, memory_mb=8192))
    assert after.findtext("vcpu") == "4" and after.findtext("memory") == "8192"
    assert after.findtext("currentMemory") == "8192"
    facts = defs.parse_domain(ET.tostring(after, encoding="unicode"))
    assert (facts.cpus, facts.memory_mb, facts.disk_path) == (4, 8192, "/pool/dev-cp-1.qcow2")


def test_overlay_volume_is_backed_by_the_base_image():
    vol = ET.fromstring(defs.volume_xml("n.qcow2", 10 * 1024 ** 3, "qcow2", "/pool/base.qcow2"))
    assert vol.findtext("capacity") == str(10 * 1024 ** 3)
    assert vol.find("target/format").get("type") == "qcow2"
    assert vol.findtext("backingStore/path") == "/pool/base.qcow2"


def test_seed_iso_is_labelled_cidata_and_holds_the_documents():
    data = defs.seed_iso(SEED)
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        assert iso.pvd.volume_identifier.decode().strip() == "cidata"
        names = {}
        for name in ("user-data", "meta-data"):
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
            names[name] = out.getvalue().decode()
    finally:
        iso.close()
    assert names["user-data"] == cloudinit.user_data(SEED)
    assert names["meta-data"] == cloudinit.meta_data(SEED)


def test_hypervisor_identity_ignores_credentials_and_sizes():
    a = {"kind": "vsphere", "server": "vc", "datacenter": "DC0", "folder": "f", "password": "x", "user": "u"}

    def identity(props):
        return hypervisor_identity(hypervisor_from_props(props))
    assert identity(a) == identity({**a, "password": "y", "user": "v"})
    assert identity(a) != identity({**a, "datacenter": "DC1"})
