"""The vSphere backend (pyvmomi): clone from a template, reconfigure while
powered off, then power on; cloud-init through guestinfo; IP from VMware Tools.

One session serves a batch of operations (one provider call); a session that
expired is renewed once, transparently. TLS to vCenter is verified against the
system store, a CA file or a pinned thumbprint, unless the stack says insecure.
"""

from __future__ import annotations

import base64
import functools
import ssl
import threading
import time
from typing import Any, Callable, TypeVar

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from infra.errors import HypervisorError, VMNotFound

from . import cloudinit
from .base import VMInfo, VMRequest, poll
from .tlspin import ThumbprintMismatch, pinned_context

OWNER_KEY = "vmkube.owner"
IMAGE_KEY = "vmkube.image"
KIB_PER_GB = 1024 * 1024
TASK_TIMEOUT = 1800.0
SHUTDOWN_TIMEOUT = 60.0
F = TypeVar("F", bound=Callable[..., Any])


def _renewing(method: F) -> F:
    """Runs a call once more after logging in again when the session expired."""
    @functools.wraps(method)
    def wrapper(self: "VsphereHypervisor", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except vim.fault.NotAuthenticated:
            self._login()
            return method(self, *args, **kwargs)
    return wrapper  # type: ignore[return-value]


def _snapshot(vm: vim.VirtualMachine) -> vim.vm.Snapshot | None:
    try:
        info = vm.snapshot
    except AttributeError:  # vcsim leaves the property out when there is none
        return None
    return info.currentSnapshot if info else None


def _fault_text(exc: Exception) -> str:
    return getattr(exc, "msg", "") or type(exc).__name__


class VsphereHypervisor:
    def __init__(self, server: str, user: str, password: str, datacenter: str, datastore: str,
                 network: str, folder: str = "", cluster: str = "", resource_pool: str = "",
                 linked_clone: bool = False, ca_file: str = "", thumbprint: str = "",
                 insecure: bool = False, port: int = 443):
        host, _, port_text = server.partition(":")
        self.host, self.port = host, int(port_text or port)
        self.user, self._password = user, password
        self.ca_file, self.thumbprint, self.insecure = ca_file, thumbprint, insecure
        self.linked_clone = linked_clone
        self._login_lock = threading.Lock()
        self.si: Any = None
        self._login()
        self.content = self.si.RetrieveContent()
        self.dc = self._find_datacenter(datacenter)
        self.datastore = self._named(self.dc.datastore, datastore, "vmkube:vsphere.datastore", "datastore")
        self.network = self._named(self.dc.network, network, "vmkube:vsphere.network", "network")
        self.folder = self._find_folder(folder)
        self.pool = self._find_pool(cluster, resource_pool)

    def __repr__(self) -> str:
        return f"VsphereHypervisor({self.user}@{self.host}:{self.port})"

    # -- session -----------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.thumbprint:
            return pinned_context(self.thumbprint)
        if self.insecure:
            return None  # with disableSslCertValidation: the user's explicit opt-out
        return ssl.create_default_context(cafile=self.ca_file or None)

    def _login(self) -> None:
        """Logs in; on a live connection whose session expired, logs in again on
        the same stub so that every inventory object held keeps working."""
        with self._login_lock:
            where = f"vCenter {self.host}:{self.port} (vmkube:vsphere.server)"
            if self.si is not None:
                manager = self.si.content.sessionManager
                try:
                    if manager.currentSession is not None:
                        return
                except vim.fault.NotAuthenticated:
                    pass
                try:
                    manager.Login(self.user, self._password)
                except vim.fault.InvalidLogin:
                    raise HypervisorError(f"{where}: login refused for {self.user!r}; check "
                                          "vmkube:vsphere.user and vmkube:vsphere.password") from None
                return
            try:
                self.si = SmartConnect(host=self.host, port=self.port, user=self.user, pwd=self._password,
                                       sslContext=self._ssl_context(), disableSslCertValidation=self.insecure,
                                       connectionPoolTimeout=-1, httpConnectionTimeout=60)
            except ssl.SSLCertVerificationError as exc:
                raise HypervisorError(f"{where}: certificate not trusted ({exc.verify_message}); set "
                                      "vmkube:vsphere.caFile or vmkube:vsphere.thumbprint "
                                      "(or insecure: true to skip verification)") from None
            except vim.fault.InvalidLogin:
                raise HypervisorError(f"{where}: login refused for {self.user!r}; check vmkube:vsphere.user "
                                      "and vmkube:vsphere.password") from None
            except vim.fault.HostConnectFault as exc:
                raise HypervisorError(f"{where}: {_fault_text(exc)}") from None
            except ThumbprintMismatch as exc:
                raise HypervisorError(f"{where}: {exc.args[0]}, not the one in vmkube:vsphere.thumbprint") from None
            except (OSError, ssl.SSLError) as exc:
                raise HypervisorError(f"{where}: cannot connect: {exc}") from None

    def close(self) -> None:
        if self.si is not None:
            try:
                Disconnect(self.si)
            except Exception:  # noqa: BLE001 - logging out of a dead session is not an error
                pass
            self.si = None

    # -- inventory ---------------------------------------------------------------

    @staticmethod
    def _named(items: Any, name: str, key: str, what: str) -> Any:
        for item in items:
            if item.name == name:
                return item
        have = ", ".join(sorted(i.name for i in items)) or "none"
        raise HypervisorError(f"{key}: {what} {name!r} not found (have: {have})")

    def _find_datacenter(self, name: str) -> vim.Datacenter:
        dcs = [e for e in self.content.rootFolder.childEntity if isinstance(e, vim.Datacenter)]
        return self._named(dcs, name, "vmkube:vsphere.datacenter", "datacenter")

    def _find_folder(self, path: str) -> vim.Folder:
        if not path:
            return self.dc.vmFolder
        found = self.content.searchIndex.FindByInventoryPath(f"{self.dc.name}/vm/{path.strip('/')}")
        if not isinstance(found, vim.Folder):
            raise HypervisorError(f"vmkube:vsphere.folder: VM folder {path!r} not found in datacenter "
                                  f"{self.dc.name!r}")
        return found

    def _find_pool(self, cluster: str, resource_pool: str) -> vim.ResourcePool:
        if resource_pool:
            path = resource_pool if resource_pool.startswith("/") else f"/{self.dc.name}/host/{resource_pool}"
            found = self.content.searchIndex.FindByInventoryPath(path.lstrip("/"))
            if not isinstance(found, vim.ResourcePool):
                raise HypervisorError(f"vmkube:vsphere.resourcePool: resource pool {resource_pool!r} not found")
            return found
        computes = [e for e in self.dc.hostFolder.childEntity if isinstance(e, vim.ComputeResource)]
        return self._named(computes, cluster, "vmkube:vsphere.cluster", "cluster").resourcePool

    def _template(self, name: str) -> vim.VirtualMachine:
        found = self.content.searchIndex.FindChild(self.folder, name) or \
            self.content.searchIndex.FindByInventoryPath(f"{self.dc.name}/vm/{name}")
        if not isinstance(found, vim.VirtualMachine):
            raise HypervisorError(f"vmkube:vsphere.template: template {name!r} not found in datacenter "
                                  f"{self.dc.name!r}")
        return found

    def _vm(self, name: str) -> vim.VirtualMachine | None:
        found = self.content.searchIndex.FindChild(self.folder, name)
        return found if isinstance(found, vim.VirtualMachine) else None

    @staticmethod
    def _extra(vm: vim.VirtualMachine) -> dict[str, str]:
        return {o.key: str(o.value) for o in (vm.config.extraConfig or [])} if vm.config else {}

    def _info(self, vm: vim.VirtualMachine) -> VMInfo:
        extra = self._extra(vm)
        disks = [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
        nics = [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard)]
        ip = vm.guest.ipAddress if vm.guest and vm.guest.ipAddress and ":" not in vm.guest.ipAddress else ""
        on = vm.runtime.powerState == vim.VirtualMachinePowerState.poweredOn
        return VMInfo(name=vm.name, owner=extra.get(OWNER_KEY, ""), image=extra.get(IMAGE_KEY, ""),
                      power="on" if on else "off", cpus=vm.config.hardware.numCPU,
                      memory_mb=vm.config.hardware.memoryMB,
                      disk_gb=round(disks[0].capacityInKB / KIB_PER_GB) if disks else 0,
                      ip=ip if on else "", mac=nics[0].macAddress if nics else "",
                      id=vm.config.instanceUuid or "")

    def _wait(self, task: vim.Task, what: str) -> Any:
        deadline = time.monotonic() + TASK_TIMEOUT
        while task.info.state in (vim.TaskInfo.State.queued, vim.TaskInfo.State.running):
            if time.monotonic() > deadline:
                raise HypervisorError(f"{what}: vCenter task still running after {TASK_TIMEOUT:.0f}s")
            time.sleep(0.2)
        if task.info.state != vim.TaskInfo.State.success:
            raise HypervisorError(f"{what}: {_fault_text(task.info.error)}")
        return task.info.result

    # -- the interface -------------------------------------------------------------

    @_renewing
    def prepare(self, image: str) -> None:
        template = self._template(image)
        if self.linked_clone and _snapshot(template) is None:
            raise HypervisorError(f"vmkube:vsphere.linkedClone: template {image!r} has no snapshot to "
                                  "link clones to; take one or set linkedClone: false")

    def release(self, image: str) -> None:
        """Templates belong to the vSphere admins: nothing to free."""

    def _info_unless_gone(self, vm: vim.VirtualMachine) -> VMInfo | None:
        # Another pool may delete its VMs while this one reads: a VM that vanished is not there.
        try:
            return self._info(vm)
        except vmodl.fault.ManagedObjectNotFound:
            return None

    @_renewing
    def find(self, name: str) -> VMInfo | None:
        vm = self._vm(name)
        return self._info_unless_gone(vm) if vm is not None else None

    def _owners(self) -> dict[vim.VirtualMachine, str]:
        """Every VM in the folder with its owner mark, read in one property-collector call so that
        VMs deleted meanwhile are simply absent instead of failing the read."""
        view = self.content.viewManager.CreateContainerView(self.folder, [vim.VirtualMachine], True)
        try:
            pc = vmodl.query.PropertyCollector
            spec = pc.FilterSpec(
                objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[pc.TraversalSpec(
                    name="view", type=vim.view.ContainerView, path="view", skip=False)])],
                propSet=[pc.PropertySpec(type=vim.VirtualMachine, pathSet=["config.extraConfig"])])
            owners: dict[vim.VirtualMachine, str] = {}
            result = self.content.propertyCollector.RetrievePropertiesEx([spec], pc.RetrieveOptions())
            while result is not None:
                for obj in result.objects:
                    extra = {o.key: str(o.value) for prop in (obj.propSet or []) for o in (prop.val or [])}
                    owners[obj.obj] = extra.get(OWNER_KEY, "")
                if not result.token:
                    break
                result = self.content.propertyCollector.ContinueRetrievePropertiesEx(result.token)
            return owners
        finally:
            view.Destroy()

    @_renewing
    def list_owned(self, owner: str) -> list[VMInfo]:
        infos = (self._info_unless_gone(vm) for vm, mark in self._owners().items() if mark == owner)
        return sorted((info for info in infos if info is not None), key=lambda v: v.name)

    def _guestinfo(self, req: VMRequest) -> list[vim.option.OptionValue]:
        def b64(text: str) -> str:
            return base64.b64encode(text.encode()).decode()
        values = {OWNER_KEY: req.owner, IMAGE_KEY: req.image,
                  "guestinfo.userdata": b64(cloudinit.user_data(req.seed)),
                  "guestinfo.userdata.encoding": "base64",
                  "guestinfo.metadata": b64(cloudinit.meta_data(req.seed)),
                  "guestinfo.metadata.encoding": "base64"}
        return [vim.option.OptionValue(key=k, value=v) for k, v in values.items()]

    def _nic_change(self, template: vim.VirtualMachine) -> vim.vm.device.VirtualDeviceSpec:
        net = self.network
        if isinstance(net, vim.dvs.DistributedVirtualPortgroup):
            backing: Any = vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
                port=vim.dvs.PortConnection(portgroupKey=net.key,
                                            switchUuid=net.config.distributedVirtualSwitch.uuid))
        else:
            backing = vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(network=net, deviceName=net.name)
        nics = [d for d in template.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard)]
        if nics:
            nic, op = nics[0], vim.vm.device.VirtualDeviceSpec.Operation.edit
        else:
            nic, op = vim.vm.device.VirtualVmxnet3(key=-1), vim.vm.device.VirtualDeviceSpec.Operation.add
        nic.backing = backing
        nic.connectable = vim.vm.device.VirtualDevice.ConnectInfo(startConnected=True, allowGuestControl=True,
                                                                  connected=True)
        return vim.vm.device.VirtualDeviceSpec(operation=op, device=nic)

    def _disk_change(self, vm: vim.VirtualMachine, disk_gb: int) -> list[vim.vm.device.VirtualDeviceSpec]:
        disks = [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
        if not disks:
            return []
        disk = disks[0]
        want = disk_gb * KIB_PER_GB
        if want < disk.capacityInKB:
            raise HypervisorError(f"{vm.name}: disk cannot shrink from {round(disk.capacityInKB / KIB_PER_GB)} "
                                  f"to {disk_gb} GB")
        if want == disk.capacityInKB:
            return []
        disk.capacityInKB = want
        disk.capacityInBytes = want * 1024
        return [vim.vm.device.VirtualDeviceSpec(operation=vim.vm.device.VirtualDeviceSpec.Operation.edit,
                                                device=disk)]

    @_renewing
    def create(self, req: VMRequest) -> VMInfo:
        existing = self._vm(req.name)
        if existing is not None:
            owner = self._extra(existing).get(OWNER_KEY, "")
            if owner != req.owner:
                raise HypervisorError(f"{req.name}: a VM of that name exists and belongs to "
                                      f"{owner or 'something else'}, not {req.owner}; not touching it")
            return self._info(existing)
        template = self._template(req.image)
        relocate = vim.vm.RelocateSpec(pool=self.pool, datastore=self.datastore)
        snapshot = None
        if self.linked_clone:
            relocate.diskMoveType = "createNewChildDiskBacking"
            snapshot = _snapshot(template)
        spec = vim.vm.CloneSpec(location=relocate, powerOn=False, template=False, snapshot=snapshot)
        vm = self._wait(template.CloneVM_Task(folder=self.folder, name=req.name, spec=spec),
                        f"{req.name}: clone from {req.image!r}")
        try:
            config = vim.vm.ConfigSpec(
                numCPUs=req.cpus, memoryMB=req.memory_mb, extraConfig=self._guestinfo(req),
                annotation=f"Managed by vmkube ({req.owner}). Do not edit by hand.",
                deviceChange=[self._nic_change(vm), *self._disk_change(vm, req.disk_gb)])
            self._wait(vm.ReconfigVM_Task(spec=config), f"{req.name}: configure")
        except Exception:
            # Not yet stamped with its owner: nothing would ever find it again.
            self._wait(vm.Destroy_Task(), f"{req.name}: remove the half-configured clone")
            raise
        self._wait(vm.PowerOnVM_Task(), f"{req.name}: power on")
        return self._info(vm)

    def _require(self, name: str) -> vim.VirtualMachine:
        vm = self._vm(name)
        if vm is None:
            raise VMNotFound(name)
        return vm

    @_renewing
    def power_on(self, name: str) -> None:
        vm = self._require(name)
        if vm.runtime.powerState != vim.VirtualMachinePowerState.poweredOn:
            self._wait(vm.PowerOnVM_Task(), f"{name}: power on")

    @_renewing
    def power_off(self, name: str) -> None:
        """A guest shutdown through VMware Tools when it runs, a hard power-off otherwise or on timeout."""
        vm = self._require(name)
        if vm.runtime.powerState == vim.VirtualMachinePowerState.poweredOff:
            return
        if vm.guest and vm.guest.toolsRunningStatus == "guestToolsRunning":
            try:
                vm.ShutdownGuest()
                deadline = time.monotonic() + SHUTDOWN_TIMEOUT
                while vm.runtime.powerState != vim.VirtualMachinePowerState.poweredOff \
                        and time.monotonic() < deadline:
                    time.sleep(1)
            except vmodl.MethodFault:
                pass
        if vm.runtime.powerState != vim.VirtualMachinePowerState.poweredOff:
            self._wait(vm.PowerOffVM_Task(), f"{name}: power off")

    @_renewing
    def resize(self, name: str, cpus: int, memory_mb: int, disk_gb: int) -> None:
        vm = self._require(name)
        info = self._info(vm)
        if (cpus, memory_mb, disk_gb) == (info.cpus, info.memory_mb, info.disk_gb):
            return
        disk = self._disk_change(vm, disk_gb)
        was_on = info.power == "on"
        self.power_off(name)
        spec = vim.vm.ConfigSpec(numCPUs=cpus, memoryMB=memory_mb, deviceChange=disk)
        self._wait(vm.ReconfigVM_Task(spec=spec), f"{name}: resize")
        if was_on:
            self._wait(vm.PowerOnVM_Task(), f"{name}: power on")

    def wait_ip(self, name: str, timeout: float) -> str:
        def probe() -> str:
            vm = self.find(name)
            return vm.ip if vm is not None else ""
        return poll(f"{name}: IP address from VMware Tools", probe, timeout)

    @_renewing
    def destroy(self, name: str, owner: str) -> None:
        vm = self._vm(name)
        if vm is None:
            return
        if self._extra(vm).get(OWNER_KEY) != owner:
            raise HypervisorError(f"{name}: the VM of that name is not owned by {owner}; not destroying it")
        if vm.runtime.powerState != vim.VirtualMachinePowerState.poweredOff:
            self._wait(vm.PowerOffVM_Task(), f"{name}: power off")
        try:
            self._wait(vm.Destroy_Task(), f"{name}: destroy")
        except vmodl.fault.ManagedObjectNotFound:
            pass
