"""The libvirt backend (libvirt-python): base image volume, per-VM qcow2 overlay,
NoCloud seed ISO, domain from a pure definition, IP from the DHCP lease."""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Sequence

import libvirt

from vmkube.errors import HypervisorError, VMNotFound

from vmkube.vms import libvirt_xml as defs
from vmkube.vms.base import VMInfo, VMRequest, no_shrink, not_ours, poll

GIB = 1024 ** 3
SHUTDOWN_TIMEOUT = 60.0
PART_SUFFIX = ".part-"  # a base volume being uploaded: <name>.part-<host>-<pid>

# libvirt errors that mean "already gone": deleting them is success.
_GONE = {libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_STORAGE_VOL}
_HINTS = {
    libvirt.VIR_ERR_NO_STORAGE_POOL: "set vmkube:libvirt.storagePool to an existing pool, or run tools/host-setup",
    libvirt.VIR_ERR_NO_NETWORK: "set vmkube:libvirt.network to an existing network, or run tools/host-setup",
}


class _PoolLocks:
    """One lock per storage pool for this process.

    Every pool resource of a stack runs as a thread of the same provider
    process, each with its own connection; without a shared lock, one would
    boot from a base volume another is still uploading.
    """

    _guard = threading.Lock()
    _locks: dict[tuple[str, str], threading.Lock] = {}

    @classmethod
    def get(cls, uri: str, pool: str) -> threading.Lock:
        with cls._guard:
            return cls._locks.setdefault((uri, pool), threading.Lock())


class LibvirtHypervisor:
    def __init__(self, uri: str, network: str, storage_pool: str, domain_type: str = "qemu"):
        self.uri = uri
        self.network = network
        self.storage_pool = storage_pool
        self.domain_type = domain_type
        self._lock = _PoolLocks.get(uri, storage_pool)
        self._stale: dict[str, set[tuple[str, int]]] = {}  # domain -> leases its MAC held before we started it
        # libvirt reports errors through a global callback as well; keep them out of stderr.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        try:
            self.conn = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot connect to libvirt at {uri} (vmkube:libvirt.uri): "
                                  f"{exc.get_error_message()}; is libvirtd running? (tools/host-setup)") from None
        with self._edge("vmkube:libvirt.storagePool", f"storage pool {storage_pool!r}"):
            self.pool = self.conn.storagePoolLookupByName(storage_pool)
        with self._edge("vmkube:libvirt.network", f"network {network!r}"):
            self.conn.networkLookupByName(network)

    def close(self) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            self.conn.close()

    @contextlib.contextmanager
    def _edge(self, subject: str, action: str) -> Iterator[None]:
        """Translates libvirt's errors once, naming the node or key and a hint."""
        try:
            yield
        except libvirt.libvirtError as exc:
            hint = _HINTS.get(exc.get_error_code(), "")
            message = f"{subject}: {action}: {exc.get_error_message()}"
            raise HypervisorError(f"{message} ({hint})" if hint else message) from None

    # -- lookups ---------------------------------------------------------------

    def _domain(self, name: str) -> libvirt.virDomain | None:
        try:
            return self.conn.lookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def _metadata(self, dom: libvirt.virDomain) -> dict[str, str]:
        try:
            return defs.parse_metadata(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, defs.METADATA_NS))
        except libvirt.libvirtError:
            return {}

    def _info(self, dom: libvirt.virDomain) -> VMInfo:
        facts = defs.parse_domain(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        meta = self._metadata(dom)
        disk_gb = 0
        with contextlib.suppress(libvirt.libvirtError):
            disk_gb = round(self.conn.storageVolLookupByPath(facts.disk_path).info()[1] / GIB)
        active = dom.isActive() == 1
        return VMInfo(name=dom.name(), owner=meta.get("owner", ""), image=meta.get("image", ""),
                      power="on" if active else "off", cpus=facts.cpus, memory_mb=facts.memory_mb,
                      disk_gb=disk_gb, mac=facts.mac, ip=self._lease_ip(dom) if active else "",
                      id=dom.UUIDString())

    def _leases(self, mac: str) -> set[tuple[str, int]]:
        """(IPv4 address, expiry) of each DHCP lease the network holds for ``mac``."""
        try:
            leases = self.conn.networkLookupByName(self.network).DHCPLeases(mac)
        except libvirt.libvirtError:
            return set()
        return {(lease["ipaddr"], lease.get("expirytime", 0)) for lease in leases
                if lease.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4}

    def _lease_ip(self, dom: libvirt.virDomain) -> str:
        """The IPv4 address of the domain's newest DHCP lease, leaving out the leases its MAC
        held before this hypervisor started it. A node defined again keeps its MAC
        (stable_mac) but asks with a new DHCP client id, so until its old lease expires
        dnsmasq lists that one too: `make up` right after `make destroy` took the old VM's
        address and waited for SSH there."""
        try:
            ifaces = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE)
        except libvirt.libvirtError:
            return ""
        found = [(iface.get("hwaddr") or "", addr["addr"]) for iface in ifaces.values()
                 for addr in iface.get("addrs") or [] if addr.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4]
        stale = self._stale.get(dom.name())
        if not found or (len(found) == 1 and not stale):
            return found[0][1] if found else ""
        leases = self._leases(found[0][0]) - (stale or set())
        ours = {ip for _mac, ip in found}
        newest = max((lease for lease in leases if lease[0] in ours), key=lambda lease: lease[1], default=None)
        return newest[0] if newest else ("" if stale else found[0][1])

    def find(self, name: str) -> VMInfo | None:
        with self._edge(name, "look up"):
            dom = self._domain(name)
            return self._info(dom) if dom is not None else None

    def list_owned(self, owner: str) -> list[VMInfo]:
        with self._edge(owner, "list VMs"):
            doms = self.conn.listAllDomains()
            return sorted((self._info(d) for d in doms if self._metadata(d).get("owner") == owner),
                          key=lambda vm: vm.name)

    # -- the base image ----------------------------------------------------------

    def _volume(self, name: str) -> libvirt.virStorageVol | None:
        try:
            return self.pool.storageVolLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return None
            raise

    def _upload(self, name: str, data: io.BufferedIOBase, size: int, fmt: str) -> libvirt.virStorageVol:
        vol = self.pool.createXML(defs.volume_xml(name, size, fmt), 0)
        try:
            self._write_volume(vol, data, size)
        except BaseException:
            with contextlib.suppress(libvirt.libvirtError):
                vol.delete(0)
            raise
        return vol

    def _write_volume(self, vol: libvirt.virStorageVol, data: io.BufferedIOBase, size: int) -> None:
        """Streams bytes through libvirt, so a remote libvirtd works the same as a local one."""
        stream = self.conn.newStream(0)
        try:
            vol.upload(stream, 0, size, 0)
            stream.sendAll(lambda _s, n, f: f.read(n), data)
            stream.finish()
        except BaseException:
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()
            raise

    @staticmethod
    def _uploads(image: str) -> list[tuple[str, Path, str, str]]:
        """The volumes vmkube uploads for an image: (key, source file, volume name, format).

        Empty for a volume that was already in the pool: that one is the user's.
        """
        path = Path(image)
        if path.is_dir():
            base = f"vmkube-{path.name}"
            return [("disk", path / "disk.qcow2", f"{base}.qcow2", "qcow2"),
                    ("kernel", path / "vmlinuz", f"{base}.vmlinuz", "raw"),
                    ("initrd", path / "initrd.img", f"{base}.initrd", "raw")]
        if path.is_file():
            return [("disk", path, f"vmkube-{path.name}", "qcow2")]
        return []

    def _base(self, image: str) -> dict[str, str]:
        """Puts the base image into the pool once; returns the disk and kernel paths.

        ``image`` is a directory made by tools/build-image (direct kernel boot),
        a qcow2 file, or the name of a volume already in the pool (boot loader).
        """
        with self._lock:
            uploads = self._uploads(image)
            if not uploads:
                vol = self._volume(image)
                if vol is None:
                    raise HypervisorError(f"vmkube:libvirt.baseImage: {image!r} is neither a file, an image "
                                          f"directory nor a volume of pool {self.storage_pool!r}")
                return {"disk": vol.path()}
            out = {}
            if Path(image).is_dir():
                out["cmdline"] = json.loads((Path(image) / "image.json").read_text())["cmdline"]
            self._delete_stale_parts()
            for key, src, vname, fmt in uploads:
                vol = self._volume(vname) or self._upload_whole(vname, src, fmt)
                out[key] = vol.path()
            return out

    def _upload_whole(self, name: str, src: Path, fmt: str) -> libvirt.virStorageVol:
        """Uploads under a temporary name and copies it to ``name`` once complete (libvirt
        cannot rename a volume): a volume by the final name is never a cut-off upload."""
        part = f"{name}{PART_SUFFIX}{socket.gethostname()}-{os.getpid()}"
        self._delete_volumes([part])
        size = os.path.getsize(src)
        with open(src, "rb") as fh:
            tmp = self._upload(part, fh, size, fmt)
        try:
            return self.pool.createXMLFrom(defs.volume_xml(name, size, fmt), tmp, 0)
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                tmp.delete(0)

    def _delete_stale_parts(self) -> None:
        """Temporary uploads of vmkube processes on this machine that are gone."""
        host = socket.gethostname()
        for vol in self.pool.listAllVolumes():
            base, sep, owner = vol.name().rpartition(PART_SUFFIX)
            if not sep or not base.startswith("vmkube-") or not owner.startswith(f"{host}-"):
                continue
            pid = owner.rsplit("-", 1)[-1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                with contextlib.suppress(libvirt.libvirtError):
                    vol.delete(0)

    def release(self, image: str) -> None:
        """Deletes the base volumes vmkube uploaded for ``image`` once no VM of vmkube uses it."""
        with self._lock, self._edge("vmkube:libvirt.baseImage", f"release {image!r}"):
            if any(self._metadata(d).get("image") == image for d in self.conn.listAllDomains()):
                return
            # By name, not by reading the image: its files may be gone from this machine by now.
            name = Path(image).name
            self._delete_volumes([f"vmkube-{name}", f"vmkube-{name}.qcow2", f"vmkube-{name}.vmlinuz",
                                  f"vmkube-{name}.initrd"])

    def _delete_volumes(self, names: list[str]) -> None:
        """Deletes the volumes that exist; one already gone is fine."""
        for vname in names:
            vol = self._volume(vname)
            if vol is None:
                continue
            try:
                vol.delete(0)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in _GONE:
                    raise

    def place(self, owner: str, names: Sequence[str], anti_affinity: bool) -> None:
        """One libvirt host runs every VM: there is nothing to spread them over."""

    def prepare(self, image: str) -> None:
        with self._edge("vmkube:libvirt.baseImage", f"prepare {image!r}"):
            self._base(image)

    # -- lifecycle ---------------------------------------------------------------

    def create(self, req: VMRequest) -> VMInfo:
        with self._edge(req.name, "create"):
            existing = self._domain(req.name)
            if existing is not None:
                owner = self._metadata(existing).get("owner", "")
                if owner != req.owner:
                    raise not_ours(req.name, owner, req.owner)
                return self._info(existing)
            base = self._base(req.image)
            disk = self._volume(f"{req.name}.qcow2") or self.pool.createXML(
                defs.volume_xml(f"{req.name}.qcow2", req.disk_gb * GIB, "qcow2", base["disk"]), 0)
            mac = self._free_mac(defs.stable_mac(req.owner, req.name))
            seed = req.seed
            if seed.network is not None:  # a static address binds to the NIC by its MAC
                seed = replace(seed, network=replace(seed.network, mac=mac))
            iso = defs.seed_iso(seed)
            self._delete_volumes([f"{req.name}-seed.iso"])
            seed = self._upload(f"{req.name}-seed.iso", io.BytesIO(iso), len(iso), "raw")
            spec = defs.DomainSpec(
                name=req.name, owner=req.owner, image=req.image, cpus=req.cpus, memory_mb=req.memory_mb,
                disk_path=disk.path(), seed_path=seed.path(), network=self.network,
                domain_type=self.domain_type, kernel=base.get("kernel", ""),
                initrd=base.get("initrd", ""), cmdline=base.get("cmdline", ""),
                mac=mac)
            dom = self.conn.defineXML(defs.domain_xml(spec))
            self._stale[req.name] = self._leases(mac)
            dom.create()
            return self._info(dom)

    def _free_mac(self, mac: str) -> str:
        """The node's stable MAC, unless another domain happens to hold it (then a random free
        one: the seed must name the MAC before the domain exists)."""
        taken = {defs.parse_domain(d.XMLDesc(0)).mac for d in self.conn.listAllDomains()}
        while mac in taken:
            mac = "52:54:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))
        return mac

    def _require(self, name: str) -> libvirt.virDomain:
        dom = self._domain(name)
        if dom is None:
            raise VMNotFound(name)
        return dom

    def power_on(self, name: str) -> None:
        with self._edge(name, "power on"):
            dom = self._require(name)
            if not dom.isActive():
                dom.create()

    def power_off(self, name: str) -> None:
        """ACPI shutdown with a deadline, then a hard stop."""
        with self._edge(name, "power off"):
            dom = self._require(name)
            if not dom.isActive():
                return
            with contextlib.suppress(libvirt.libvirtError):
                dom.shutdown()
            deadline = time.monotonic() + SHUTDOWN_TIMEOUT
            while dom.isActive() and time.monotonic() < deadline:
                time.sleep(1)
            if dom.isActive():
                dom.destroy()

    def resize(self, name: str, cpus: int, memory_mb: int, disk_gb: int) -> None:
        vm = self.find(name)
        if vm is None:
            raise VMNotFound(name)
        if disk_gb < vm.disk_gb:
            raise no_shrink(name, vm.disk_gb, disk_gb)
        if (cpus, memory_mb, disk_gb) == (vm.cpus, vm.memory_mb, vm.disk_gb):
            return
        was_on = vm.power == "on"
        self.power_off(name)
        with self._edge(name, "resize"):
            dom = self._require(name)
            if (cpus, memory_mb) != (vm.cpus, vm.memory_mb):
                xml = defs.resized_domain_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), cpus, memory_mb)
                dom = self.conn.defineXML(xml)
            if disk_gb > vm.disk_gb:
                path = defs.parse_domain(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).disk_path
                self.conn.storageVolLookupByPath(path).resize(disk_gb * GIB, 0)
            if was_on:
                dom.create()

    def wait_ip(self, name: str, timeout: float) -> str:
        def probe() -> str:
            with self._edge(name, "read DHCP lease"):
                return self._lease_ip(self._require(name))
        return poll(f"{name}: IP address from the DHCP lease of network {self.network!r}", probe, timeout)

    def destroy(self, name: str, owner: str) -> None:
        """Removes the domain, its overlay and its seed; what is already gone is fine."""
        with self._edge(name, "destroy"):
            dom = self._domain(name)
            if dom is not None and self._metadata(dom).get("owner") != owner:
                raise not_ours(name, self._metadata(dom).get("owner", ""), owner)
            if dom is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    dom.destroy()
                try:
                    # vmkube's domains boot without UEFI: there is no NVRAM to remove.
                    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                                      | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() not in _GONE:
                        raise
            self._delete_volumes([f"{name}.qcow2", f"{name}-seed.iso"])
