"""libvirt definitions as pure functions: domain, volumes and the seed ISO.

Nothing here talks to libvirt, so every definition is unit-tested as data.
"""

from __future__ import annotations

import hashlib
import io
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import pycdlib

from vmkube.vms import cloudinit

METADATA_NS = "urn:vmkube:node:1"
METADATA_KEY = "vmkube"
# QEMU's translation cache under TCG (its default, about 1 GiB, is held once filled). A
# control plane's code does not fit in 64 MiB: measured with QEMU's `info jit`, such a VM
# flushed its whole cache once a second (1989 flushes in 34 min) and spent its vCPUs
# translating the same code again, until its API server and etcd timed out TLS handshakes.
TCG_TB_CACHE_MIB = 512


@dataclass(frozen=True)
class DomainSpec:
    name: str
    owner: str
    image: str
    cpus: int
    memory_mb: int
    disk_path: str
    seed_path: str
    network: str
    domain_type: str = "qemu"
    kernel: str = ""    # direct kernel boot when set (images without a boot loader)
    initrd: str = ""
    cmdline: str = ""
    console_log: str = ""  # a file on the libvirt host receiving the serial console
    mac: str = ""  # empty: libvirt picks one


def stable_mac(owner: str, name: str) -> str:
    """The same MAC for the same node whenever its domain is defined again: a
    kept disk's network configuration (cloud-init binds it to the MAC on first
    boot) still matches, and the DHCP lease keeps its address."""
    digest = hashlib.sha256(f"{owner}/{name}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, {k.rstrip("_"): v for k, v in attrs.items()})
    if text is not None:
        el.text = text
    return el


def metadata_xml(owner: str, image: str) -> str:
    el = ET.Element("node", {"xmlns": METADATA_NS})
    _sub(el, "owner", owner)
    _sub(el, "image", image)
    return ET.tostring(el, encoding="unicode")


def parse_metadata(text: str) -> dict[str, str]:
    root = ET.fromstring(text)
    return {child.tag.split("}")[-1]: (child.text or "") for child in root}


def domain_xml(spec: DomainSpec) -> str:
    dom = ET.Element("domain", {"type": spec.domain_type})
    _sub(dom, "name", spec.name)
    meta = _sub(dom, "metadata")
    meta.append(ET.fromstring(metadata_xml(spec.owner, spec.image)))
    _sub(dom, "memory", str(spec.memory_mb), unit="MiB")
    _sub(dom, "currentMemory", str(spec.memory_mb), unit="MiB")
    _sub(dom, "vcpu", str(spec.cpus))

    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="q35")
    if spec.kernel:
        _sub(os_el, "kernel", spec.kernel)
        _sub(os_el, "initrd", spec.initrd)
        _sub(os_el, "cmdline", spec.cmdline)
    else:
        _sub(os_el, "boot", dev="hd")

    features = _sub(dom, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if spec.domain_type == "qemu":
        tcg = _sub(features, "tcg")
        _sub(tcg, "tb-cache", str(TCG_TB_CACHE_MIB), unit="MiB")
    else:
        _sub(dom, "cpu", mode="host-passthrough")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")

    devices = _sub(dom, "devices")
    _disk(devices, spec.disk_path, "qcow2", "vda")
    _disk(devices, spec.seed_path, "raw", "vdb", readonly=True)
    iface = _sub(devices, "interface", type="network")
    if spec.mac:
        _sub(iface, "mac", address=spec.mac)
    _sub(iface, "source", network=spec.network)
    _sub(iface, "model", type="virtio")
    serial = _sub(devices, "serial", type="pty")
    if spec.console_log:
        _sub(serial, "log", file=spec.console_log, append="off")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")
    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    return ET.tostring(dom, encoding="unicode")


def _disk(devices: ET.Element, path: str, fmt: str, target: str, readonly: bool = False) -> None:
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type=fmt, discard="unmap" if not readonly else "ignore")
    _sub(disk, "source", file=path)
    _sub(disk, "target", dev=target, bus="virtio")
    if readonly:
        _sub(disk, "readonly")


def resized_domain_xml(current: str, cpus: int, memory_mb: int) -> str:
    """The persistent definition with new CPU and memory sizes, all else kept."""
    dom = ET.fromstring(current)
    for tag in ("memory", "currentMemory"):
        el = dom.find(tag)
        if el is None:
            el = _sub(dom, tag)
        el.text, el.attrib = str(memory_mb), {"unit": "MiB"}
    vcpu = dom.find("vcpu")
    vcpu.text = str(cpus)
    vcpu.attrib.pop("current", None)
    return ET.tostring(dom, encoding="unicode")


@dataclass(frozen=True)
class DomainFacts:
    cpus: int
    memory_mb: int
    mac: str
    disk_path: str


def parse_domain(xml: str) -> DomainFacts:
    dom = ET.fromstring(xml)
    mem = dom.find("memory")
    unit = (mem.get("unit") or "KiB") if mem is not None else "KiB"
    factor = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "b": 1 / 1024 / 1024, "bytes": 1 / 1024 / 1024}.get(unit, 1 / 1024)
    mac = dom.find("devices/interface/mac")
    disk = dom.find("devices/disk[target]/source")
    for d in dom.findall("devices/disk"):
        target = d.find("target")
        if target is not None and target.get("dev") == "vda":
            disk = d.find("source")
    return DomainFacts(
        cpus=int(dom.findtext("vcpu") or 0),
        memory_mb=int(int(mem.text) * factor) if mem is not None and mem.text else 0,
        mac=mac.get("address", "") if mac is not None else "",
        disk_path=(disk.get("file") or disk.get("volume") or "") if disk is not None else "",
    )


def volume_xml(name: str, capacity_bytes: int, fmt: str, backing_path: str = "",
               backing_format: str = "qcow2") -> str:
    vol = ET.Element("volume")
    _sub(vol, "name", name)
    _sub(vol, "capacity", str(capacity_bytes), unit="bytes")
    target = _sub(vol, "target")
    _sub(target, "format", type=fmt)
    _sub(target, "permissions").append(_mode("0600"))
    if backing_path:
        backing = _sub(vol, "backingStore")
        _sub(backing, "path", backing_path)
        _sub(backing, "format", type=backing_format)
    return ET.tostring(vol, encoding="unicode")


def _mode(value: str) -> ET.Element:
    el = ET.Element("mode")
    el.text = value
    return el


def seed_iso(seed: cloudinit.NodeSeed) -> bytes:
    """The NoCloud seed: an ISO labelled `cidata` with user-data, meta-data and, for a
    static address, network-config."""
    files = {"user-data": cloudinit.user_data(seed), "meta-data": cloudinit.meta_data(seed)}
    network = cloudinit.network_config(seed)
    if network is not None:
        files["network-config"] = network
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    for name, text in files.items():
        data = text.encode()
        short = name.replace("-", "").upper()[:8]
        iso.add_fp(io.BytesIO(data), len(data), f"/{short}.;1", rr_name=name, joliet_path=f"/{name}")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()
