"""The vSphere backend (pyvmomi): clone from a template, reconfigure while
powered off, then power on; cloud-init through guestinfo; IP from VMware Tools.

One session serves a batch of operations (one provider call); a session that
expired is renewed once, transparently. TLS to vCenter is verified against the
system store, a CA file or a pinned thumbprint, unless the stack says insecure.

Inventory settings are a name unique in their scope, a path inside it, or a full
inventory path; every scope is read in one property-collector call. Before the
first clone the login's privileges are checked on every object vmkube will touch
(README, "vSphere privileges"). VM folders are created when missing and removed
when vmkube made them and they are empty again; VMs get the stack's custom
attributes; pools that ask for it are spread over hosts by a DRS anti-affinity
rule that follows their members. vSphere tags would need the vAPI REST endpoint,
which pyVmomi does not speak: vmkube sets custom attributes instead. So would
templates from a content library (vcenter/vm-template/library-items/{item}?action=deploy,
vcenter/ovf/library-item): pyVmomi only reads which item a VM came from
(config.contentLibItemInfo), so the template is a VM template in the VM folder. vcsim
0.46.3 has libraries on its REST endpoint only, and its deploy makes a template, not a VM.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import ssl
import threading
import time
from dataclasses import replace
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import SoapStubAdapter, pbm, vim, vmodl

from vmkube.config import VsphereSpec
from vmkube.errors import HypervisorError, VMNotFound

from vmkube.vms import cloudinit
from vmkube.vms.base import VMInfo, VMRequest, no_shrink, not_ours, poll
from vmkube.vms.tlspin import ThumbprintMismatch, pinned_context

log = logging.getLogger("vmkube.vsphere")
OWNER_KEY = "vmkube.owner"
IMAGE_KEY = "vmkube.image"
KIB_PER_GB = 1024 * 1024
TASK_TIMEOUT = 1800.0
VM_PROPERTIES = ("name", "config.extraConfig", "config.hardware.device", "config.hardware.numCPU",
                 "config.hardware.memoryMB", "config.instanceUuid", "guest.ipAddress", "runtime.powerState")
SHUTDOWN_TIMEOUT = 60.0
# The custom attribute that marks a VM folder vmkube created: only marked folders are ever
# removed (and only when empty). The mark lives in vCenter, so any later run — another pool,
# another machine, a state restored from backup — re-derives which folders are vmkube's.
FOLDER_MARK = "vmkube.folder"
FOLDER_MARK_VALUE = "created by vmkube; removed by vmkube once empty"
PBM_VERSION = "pbm.version.version11"
LISTED = 12  # inventory names quoted in a not-found error
VM_PRIVILEGES = ("VirtualMachine.Inventory.Create", "VirtualMachine.Inventory.Delete",
                 "VirtualMachine.Config.CPUCount", "VirtualMachine.Config.Memory",
                 "VirtualMachine.Config.DiskExtend", "VirtualMachine.Config.EditDevice",
                 "VirtualMachine.Config.AdvancedConfig", "VirtualMachine.Config.Annotation",
                 "VirtualMachine.Interact.PowerOn", "VirtualMachine.Interact.PowerOff")
F = TypeVar("F", bound=Callable[..., Any])


class _FolderUse:
    """Within one provider process (every pool of a stack shares it): clones into VM
    folders (shared) never overlap with removing an empty folder vmkube made (exclusive).
    vSphere has no "remove if empty": Folder.Destroy_Task deletes whatever the folder
    holds by then, so the emptiness check and the removal must not race a clone. Two
    processes (two stacks in one folder) can still race; the window is one round trip."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._users = 0
        self._pruning = False
        self.create = threading.Lock()  # one creator of missing levels at a time

    @contextlib.contextmanager
    def using(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._pruning)
            self._users += 1
        try:
            yield
        finally:
            with self._cond:
                self._users -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def pruning(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._pruning and not self._users)
            self._pruning = True
        try:
            yield
        finally:
            with self._cond:
                self._pruning = False
                self._cond.notify_all()


_FOLDERS = _FolderUse()


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


def _listing(paths: Iterable[str]) -> str:
    names = sorted(set(paths))
    more = f", … ({len(names) - LISTED} more)" if len(names) > LISTED else ""
    return (", ".join(names[:LISTED]) or "none") + more


def _joined(scope: str, path: str) -> str:
    return f"{scope}/{path}" if scope else path


def pick(entries: Sequence[tuple[str, Any]], wanted: str, scope: str, key: str, what: str,
         where: str = "") -> Any:
    """The one entry ``wanted`` names: a full inventory path (``/DC/host/C0``), a path
    below ``scope`` (``prod/C0``), or a plain name unique below it. ``entries`` are
    (path below scope, object); not found or ambiguous is an error naming ``key``."""
    if wanted.startswith("/"):
        hits = [o for p, o in entries if _joined(scope, p) == wanted.strip("/")]
    elif "/" in wanted:
        hits = [o for p, o in entries if p == wanted.strip("/")]
    else:
        hits = [o for p, o in entries if p.rsplit("/", 1)[-1] == wanted]
    if len(hits) == 1:
        return hits[0]
    if hits:
        paths = sorted(p for p, o in entries if o in hits)
        raise HypervisorError(f"{key}: {what} {wanted!r} is ambiguous{where}: {', '.join(paths)}; "
                              f"give its path, like {paths[0]!r}")
    raise HypervisorError(f"{key}: {what} {wanted!r} not found (have: {_listing(p for p, _ in entries)}){where}")


def missing_privileges(needed: Sequence[tuple[Any, str, str]], granted: set[tuple[str, str]],
                       labels: dict[str, str]) -> list[str]:
    """One line per (object, privilege) the session lacks, saying what vmkube needs it for."""
    out = []
    for entity, privilege, why in needed:
        if (entity._moId, privilege) not in granted:
            line = f"{privilege} on {labels.get(entity._moId, entity._moId)} ({why})"
            if line not in out:
                out.append(line)
    return out


class VsphereHypervisor:
    def __init__(self, spec: VsphereSpec, port: int = 443):
        host, _, port_text = spec.server.partition(":")
        self.host, self.port = host, int(port_text or port)
        self.user, self._password = spec.user, spec.password.reveal()
        self.ca_file, self.thumbprint, self.insecure = spec.ca_file, spec.thumbprint, spec.insecure
        self.linked_clone = spec.linked_clone
        self.attributes = dict(spec.custom_attributes)
        self._keys: dict[str, int] | None = None
        self._login_lock = threading.Lock()
        self.si: Any = None
        self._login()
        self.content = self.si.RetrieveContent()
        self._labels: dict[str, str] = {self.content.rootFolder._moId: "the vCenter root folder"}
        self._templates: dict[str, vim.VirtualMachine] = {}
        self.dc, self.dc_path = self._find_datacenter(spec.datacenter)
        roots = self._props(self.dc, "vmFolder", "hostFolder", "datastoreFolder", "networkFolder")
        self.vm_root, self.host_root = roots["vmFolder"], roots["hostFolder"]
        self._where = f" in datacenter {self.dc_path!r}"
        self.network = self._find(roots["networkFolder"], "network", spec.network, (vim.Network,),
                                  "vmkube:vsphere.network", "network")
        self.pool, self.compute = self._find_pool(spec.cluster, spec.resource_pool)
        # DRS rules need a cluster; a standalone host's pool has nothing to spread over.
        self.cluster = self.compute if isinstance(self.compute, vim.ClusterComputeResource) else None
        self.profile: pbm.profile.ProfileId | None = None
        if spec.storage_policy:
            self.profile, self.datastore = self._find_policy(spec.storage_policy)
        else:
            self.datastore = self._find(roots["datastoreFolder"], "datastore", spec.datastore, (vim.Datastore,),
                                        "vmkube:vsphere.datastore", "datastore")
        self.folder_path = spec.folder
        self.folder, self._folder_base, self._folder_missing = self._locate_folder()

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

    def _collect(self, spec: vmodl.query.PropertyCollector.FilterSpec) -> dict[Any, dict[str, Any]]:
        """Every object the filter reaches with its properties, page by page; an object
        deleted meanwhile is absent."""
        pc = vmodl.query.PropertyCollector
        out: dict[Any, dict[str, Any]] = {}
        try:
            result = self.content.propertyCollector.RetrievePropertiesEx([spec], pc.RetrieveOptions())
        except vmodl.fault.ManagedObjectNotFound:
            return out
        while result is not None:
            for obj in result.objects:
                out[obj.obj] = {prop.name: prop.val for prop in obj.propSet or []}
            if not result.token:
                break
            result = self.content.propertyCollector.ContinueRetrievePropertiesEx(result.token)
        return out

    def _props(self, obj: Any, *paths: str) -> dict[str, Any]:
        """Some properties of one object in one round trip ({} when it is gone)."""
        pc = vmodl.query.PropertyCollector
        spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=obj, skip=False)],
                             propSet=[pc.PropertySpec(type=type(obj), pathSet=list(paths))])
        return self._collect(spec).get(obj, {})

    def _tree(self, root: Any, kinds: tuple[type, ...], through_pools: bool = False) -> list[tuple[str, Any]]:
        """Every object of ``kinds`` below ``root`` with its inventory path below it, from
        one property-collector call reading the name and parent of each folder (and, with
        ``through_pools``, compute resource and resource pool) on the way."""
        pc = vmodl.query.PropertyCollector
        names = ["folders", "computes", "pools"] if through_pools else ["folders"]
        steps = [("folders", vim.Folder, "childEntity"), ("computes", vim.ComputeResource, "resourcePool"),
                 ("pools", vim.ResourcePool, "resourcePool")][:len(names)]
        select = [pc.TraversalSpec(name=n, type=k, path=path, skip=False,
                                   selectSet=[pc.SelectionSpec(name=s) for s in names]) for n, k, path in steps]
        spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=root, skip=False, selectSet=select)],
                             propSet=[pc.PropertySpec(type=vim.ManagedEntity, pathSet=["name", "parent"])])
        found = self._collect(spec)

        def path(obj: Any) -> str:
            parts = []
            while obj in found and obj != root:
                parts.append(found[obj].get("name", ""))
                obj = found[obj].get("parent")
            return "/".join(reversed(parts))
        return sorted(((path(o), o) for o in found
                       if o != root and isinstance(o, kinds) and not isinstance(o, vim.VirtualApp)),
                      key=lambda e: e[0])

    def _label(self, obj: Any, what: str, path: str) -> None:
        self._labels[obj._moId] = f"{what} {path!r}"

    def _find_datacenter(self, wanted: str) -> tuple[vim.Datacenter, str]:
        entries = self._tree(self.content.rootFolder, (vim.Datacenter,))
        dc = pick(entries, wanted, "", "vmkube:vsphere.datacenter", "datacenter")
        path = next(p for p, o in entries if o == dc)
        self._label(dc, "datacenter", path)
        return dc, path

    def _find(self, root: Any, under: str, wanted: str, kinds: tuple[type, ...], key: str, what: str,
              through_pools: bool = False) -> Any:
        """``wanted`` below one of the datacenter's folders (``under``: host, network, …)."""
        entries = self._tree(root, kinds, through_pools)
        scope = f"{self.dc_path}/{under}"
        found = pick(entries, wanted, scope, key, what, self._where)
        self._label(found, what, _joined(scope, next(p for p, o in entries if o == found)))
        return found

    def _find_pool(self, cluster: str, resource_pool: str) -> tuple[vim.ResourcePool, vim.ComputeResource]:
        if resource_pool:
            pool = self._find(self.host_root, "host", resource_pool, (vim.ResourcePool,),
                              "vmkube:vsphere.resourcePool", "resource pool", through_pools=True)
            compute = self._props(pool, "owner")["owner"]
            self._labels.setdefault(compute._moId, f"the compute resource of {self._labels[pool._moId]}")
            return pool, compute
        compute = self._find(self.host_root, "host", cluster, (vim.ComputeResource,),
                             "vmkube:vsphere.cluster", "cluster")
        pool = self._props(compute, "resourcePool")["resourcePool"]
        self._labels[pool._moId] = f"the resource pool of {self._labels[compute._moId]}"
        return pool, compute

    def _locate_folder(self) -> tuple[vim.Folder | None, vim.Folder, list[str]]:
        """The VM folder (None while missing), its deepest existing level and the levels
        still missing. ``folder`` is always a path from the datacenter's VM folder (a plain
        name is a top-level folder), never a same-named folder found elsewhere: vmkube
        creates it when missing, so it must mean one place."""
        key, scope = "vmkube:vsphere.folder", f"{self.dc_path}/vm"
        path = self.folder_path
        if path.startswith("/"):
            if path.strip("/") != scope and not path.strip("/").startswith(scope + "/"):
                raise HypervisorError(f"{key}: {path!r} is not inside the VM folder of datacenter "
                                      f"{self.dc_path!r} (/{scope})")
            path = path.strip("/")[len(scope):]
        levels = [level for level in path.split("/") if level]
        base = self.vm_root
        self._label(base, "VM folder", scope)
        for i, level in enumerate(levels):
            child = self.content.searchIndex.FindChild(base, level)
            if child is None:
                return None, base, levels[i:]
            where = "/".join(levels[:i + 1])
            if not isinstance(child, vim.Folder):
                raise HypervisorError(f"{key}: {where!r}{self._where} is a {type(child).__name__.split('.')[-1]}, "
                                      "not a folder")
            base = child
            self._label(base, "VM folder", f"{scope}/{where}")
        return base, base, []

    def _template(self, name: str) -> vim.VirtualMachine:
        if name not in self._templates:
            self._templates[name] = self._find(self.vm_root, "vm", name, (vim.VirtualMachine,),
                                               "vmkube:vsphere.template", "template")
        return self._templates[name]

    # -- storage policy (SPBM) ---------------------------------------------------

    def _pbm(self) -> Any:
        """The storage-policy endpoint on this session. vCenter takes the session from the
        vcSessionCookie header, vcsim from the session cookie itself: the stub sends both."""
        cookie = self.si._stub.cookie
        session = cookie.split(";", 1)[0].partition("=")[2].strip('"')
        ctx = self._ssl_context() or ssl._create_unverified_context()  # None: insecure, the user's opt-out
        stub = SoapStubAdapter(host=self.host, port=self.port, path="/pbm", version=PBM_VERSION, sslContext=ctx,
                               requestContext={"vcSessionCookie": session}, connectionPoolTimeout=-1)
        stub.cookie = cookie
        return pbm.ServiceInstance("ServiceInstance", stub).RetrieveContent()

    def _find_policy(self, name: str) -> tuple[pbm.profile.ProfileId, vim.Datastore]:
        """The policy's ID and the datastore the VMs go to: of the datastores the compute
        resource mounts, the compatible one with the most free space."""
        key = "vmkube:vsphere.storagePolicy"
        content = self._pbm()
        manager = content.profileManager
        ids = manager.PbmQueryProfile(resourceType=pbm.profile.ResourceType(resourceType="STORAGE"),
                                      profileCategory="REQUIREMENT")
        profiles = manager.PbmRetrieveContent(profileIds=ids) if ids else []
        hits = [p for p in profiles if p.name == name]
        if not hits:
            raise HypervisorError(f"{key}: storage policy {name!r} not found (have: {_listing(p.name for p in profiles)})")
        profile = hits[0].profileId
        mounted = self._props(self.compute, "datastore").get("datastore") or []
        hubs = [pbm.placement.PlacementHub(hubId=ds._moId, hubType="Datastore") for ds in mounted]
        results = content.placementSolver.PbmCheckRequirements(
            hubsToSearch=hubs, placementSubjectRequirement=[pbm.placement.CapabilityProfileRequirement(profileId=profile)])
        # Only the datastores asked about count (vcsim answers for every datastore it has).
        compatible = {r.hub.hubId for r in results if not r.error} & {ds._moId for ds in mounted}
        pc = vmodl.query.PropertyCollector
        spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=ds, skip=False) for ds in mounted],
                             propSet=[pc.PropertySpec(type=vim.Datastore,
                                                      pathSet=["name", "summary.freeSpace", "summary.accessible"])])
        seen = self._collect(spec) if mounted else {}
        usable = [ds for ds in mounted if ds._moId in compatible and seen.get(ds, {}).get("summary.accessible")]
        if not usable:
            checked = _listing(seen.get(ds, {}).get("name", ds._moId) for ds in mounted)
            raise HypervisorError(f"{key}: no datastore of {self._labels[self.compute._moId]} is compatible with "
                                  f"storage policy {name!r} (checked: {checked})")
        best = max(usable, key=lambda ds: seen[ds].get("summary.freeSpace") or 0)
        self._labels[best._moId] = f"datastore {seen[best]['name']!r} (picked for storage policy {name!r})"
        return profile, best

    # -- custom attributes -------------------------------------------------------

    def _field_key(self, name: str, kind: type, defined: Sequence[Any] | None = None) -> int | None:
        """The key of the custom attribute ``name`` that applies to ``kind`` (or to every type),
        among ``defined`` (read from vCenter when not given)."""
        for field in self.content.customFieldsManager.field or [] if defined is None else defined:
            if field.name == name and field.managedObjectType in (None, kind):
                return field.key
        return None

    def _ensure_field(self, name: str, kind: type, key: str) -> int:
        found = self._field_key(name, kind)
        if found is not None:
            return found
        try:
            return self.content.customFieldsManager.AddCustomFieldDef(name=name, moType=kind).key
        except vim.fault.DuplicateName:
            found = self._field_key(name, kind)  # defined meanwhile by another run
            if found is None:
                raise HypervisorError(f"{key}: a custom attribute {name!r} exists for another kind of object "
                                      "than VMs; choose another name") from None
            return found

    def _attribute_keys(self) -> dict[str, int]:
        """The stack's attribute names and their keys, defined where missing (once per connection)."""
        if self._keys is None:
            self._keys = {name: self._ensure_field(name, vim.VirtualMachine, f"vmkube:vsphere.customAttributes.{name}")
                          for name in sorted(self.attributes)}
        return self._keys

    def _set_attributes(self, vm: vim.VirtualMachine, have: dict[int, str]) -> None:
        """The stack's custom attributes on one VM; only the values that differ are written."""
        manager = self.content.customFieldsManager
        for name, key in self._attribute_keys().items():
            if have.get(key) != self.attributes[name]:
                manager.SetField(entity=vm, key=key, value=self.attributes[name])

    # -- privileges --------------------------------------------------------------

    def _needed(self, template: vim.VirtualMachine, is_template: bool) -> list[tuple[Any, str, str]]:
        """(object, privilege, what for) for everything a converge may do."""
        base, root = self._folder_base, self.content.rootFolder
        defined = self.content.customFieldsManager.field or []
        needed = [(base, p, "to clone, configure, power and delete the node VMs") for p in VM_PRIVILEGES]
        clone = "VirtualMachine.Provisioning.DeployTemplate" if is_template else "VirtualMachine.Provisioning.Clone"
        needed += [(template, clone, "to clone the nodes from it"),
                   (self.pool, "Resource.AssignVMToPool", "to run the VMs there"),
                   (self.datastore, "Datastore.AllocateSpace", "to put the VMs' disks there"),
                   (self.network, "Network.Assign", "to attach the VMs' NICs")]
        if self._folder_missing:
            missing = "/".join(self._folder_missing)
            needed += [(base, "Folder.Create", f"to create the missing folder levels {missing!r}"),
                       (base, "Folder.Delete", "to remove the folders it created once empty"),
                       (base, "Global.SetCustomField", f"to mark the folders it creates ({FOLDER_MARK})")]
            if self._field_key(FOLDER_MARK, vim.Folder, defined) is None:
                needed.append((root, "Global.ManageCustomFields", f"to define the custom attribute {FOLDER_MARK}"))
        if self.attributes:
            needed.append((base, "Global.SetCustomField", "to set vmkube:vsphere.customAttributes on the VMs"))
            if any(self._field_key(n, vim.VirtualMachine, defined) is None for n in self.attributes):
                needed.append((root, "Global.ManageCustomFields", "to define vmkube:vsphere.customAttributes"))
        if self.cluster is not None:
            # Anti-affinity is per pool and the pools are not known here: a login that may
            # run VMs in a cluster must be able to keep vmkube's DRS rules there.
            needed.append((self.cluster, "Host.Inventory.EditCluster", "to keep the pools' DRS anti-affinity rules"))
        if self.profile is not None:
            needed.append((root, "StorageProfile.View", "to read vmkube:vsphere.storagePolicy"))
        return needed

    def _granted(self, entities: list[Any], privileges: list[str]) -> set[tuple[str, str]]:
        """(object ID, privilege) pairs this session holds, as vCenter evaluates its roles,
        groups and propagation (HasPrivilegeOnEntities)."""
        session = self.content.sessionManager.currentSession.key
        result = self.content.authorizationManager.HasPrivilegeOnEntities(entity=entities, sessionId=session,
                                                                          privId=privileges)
        return {(r.entity._moId, a.privId) for r in result or [] for a in r.privAvailability or [] if a.isGranted}

    def _check_privileges(self, template: vim.VirtualMachine) -> None:
        is_template = bool(self._props(template, "config.template").get("config.template"))
        needed = self._needed(template, is_template)
        entities = list({e._moId: e for e, _, _ in needed}.values())
        granted = self._granted(entities, sorted({p for _, p, _ in needed}))
        lines = missing_privileges(needed, granted, self._labels)
        if lines:
            raise HypervisorError(f"vmkube:vsphere.user: {self.user!r} lacks privileges vmkube needs "
                                  "(README, \"vSphere privileges\"); nothing was created:\n  " + "\n  ".join(lines))

    def _in_current_folder(self, call: Callable[[vim.Folder], Any]) -> Any:
        """``call(folder)`` on the VM folder, or None while there is none. Another pool's
        connection (a stack's pools are destroyed side by side) may have removed the folder
        since this one found it: vCenter then answers ManagedObjectNotFound, and the folder
        is looked up again (gone, or made anew by a create meanwhile)."""
        for _ in range(2):
            if self.folder is None:  # the folder does not exist yet: neither do the VMs
                return None
            try:
                return call(self.folder)
            except vmodl.fault.ManagedObjectNotFound:
                self.folder, self._folder_base, self._folder_missing = self._locate_folder()
        return None

    def _vm(self, name: str) -> vim.VirtualMachine | None:
        found = self._in_current_folder(lambda folder: self.content.searchIndex.FindChild(folder, name))
        return found if isinstance(found, vim.VirtualMachine) else None

    @staticmethod
    def _extra(vm: vim.VirtualMachine) -> dict[str, str]:
        return {o.key: str(o.value) for o in (vm.config.extraConfig or [])} if vm.config else {}

    def _read(self, root: Any, pass_through: bool,
              paths: Sequence[str] = VM_PROPERTIES) -> dict[vim.VirtualMachine, dict[str, Any]]:
        """The properties a VMInfo needs, of one VM (``root``) or of every VM in a
        container view, in one property-collector call (pyVmomi's attribute access
        would make a round trip per property). A VM deleted meanwhile is absent."""
        pc = vmodl.query.PropertyCollector
        select = [pc.TraversalSpec(name="view", type=vim.view.ContainerView, path="view", skip=False)] \
            if pass_through else []
        spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=root, skip=pass_through, selectSet=select)],
                             propSet=[pc.PropertySpec(type=vim.VirtualMachine, pathSet=list(paths))])
        return self._collect(spec)

    def _in_folder(self, paths: Sequence[str]) -> dict[vim.VirtualMachine, dict[str, Any]]:
        """Every VM of the folder with ``paths``, in one call."""
        view = self._in_current_folder(
            lambda folder: self.content.viewManager.CreateContainerView(folder, [vim.VirtualMachine], True))
        if view is None:
            return {}
        try:
            return self._read(view, pass_through=True, paths=paths)
        finally:
            view.Destroy()

    @staticmethod
    def _info_from(props: dict[str, Any]) -> VMInfo:
        extra = {o.key: str(o.value) for o in props.get("config.extraConfig") or []}
        devices = props.get("config.hardware.device") or []
        disks = [d for d in devices if isinstance(d, vim.vm.device.VirtualDisk)]
        nics = [d for d in devices if isinstance(d, vim.vm.device.VirtualEthernetCard)]
        ip = props.get("guest.ipAddress") or ""
        on = props.get("runtime.powerState") == vim.VirtualMachinePowerState.poweredOn
        return VMInfo(name=props.get("name", ""), owner=extra.get(OWNER_KEY, ""), image=extra.get(IMAGE_KEY, ""),
                      power="on" if on else "off", cpus=props.get("config.hardware.numCPU") or 0,
                      memory_mb=props.get("config.hardware.memoryMB") or 0,
                      disk_gb=round(disks[0].capacityInKB / KIB_PER_GB) if disks else 0,
                      ip=ip if on and ":" not in ip else "", mac=nics[0].macAddress if nics else "",
                      id=props.get("config.instanceUuid") or "")

    def _info(self, vm: vim.VirtualMachine) -> VMInfo | None:
        props = self._read(vm, pass_through=False).get(vm)
        return self._info_from(props) if props is not None else None

    def _wait(self, task: vim.Task, what: str) -> Any:
        """Waits for the task's end through property-collector updates (no polling),
        up to TASK_TIMEOUT; fails naming what it was for and vCenter's reason."""
        pc = vmodl.query.PropertyCollector
        spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=task)],
                             propSet=[pc.PropertySpec(type=vim.Task, pathSet=["info.state"])])
        collector = self.content.propertyCollector.CreatePropertyCollector()
        deadline = time.monotonic() + TASK_TIMEOUT
        try:
            collector.CreateFilter(spec, partialUpdates=False)
            version = ""
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HypervisorError(f"{what}: vCenter task still running after {TASK_TIMEOUT:.0f}s")
                update = collector.WaitForUpdatesEx(version, pc.WaitOptions(maxWaitSeconds=max(1, int(min(left, 60)))))
                if update is not None:
                    version = update.version
                    states = [change.val for fs in update.filterSet for obj in fs.objectSet
                              for change in obj.changeSet or [] if change.name == "info.state"]
                    if any(st in (vim.TaskInfo.State.success, vim.TaskInfo.State.error) for st in states):
                        break
        finally:
            collector.DestroyPropertyCollector()
        info = task.info
        if info.state != vim.TaskInfo.State.success:
            raise HypervisorError(f"{what}: {_fault_text(info.error)}")
        return info.result

    # -- the interface -------------------------------------------------------------

    @_renewing
    def prepare(self, image: str) -> None:
        """Everything a converge needs, checked before it creates anything: the template,
        its snapshot for linked clones, and the login's privileges on each object."""
        template = self._template(image)
        if self.linked_clone and _snapshot(template) is None:
            raise HypervisorError(f"vmkube:vsphere.linkedClone: template {image!r} has no snapshot to "
                                  "link clones to; take one or set linkedClone: false")
        self._check_privileges(template)

    def release(self, image: str) -> None:
        """Templates belong to the vSphere admins: nothing to free."""

    @_renewing
    def find(self, name: str) -> VMInfo | None:
        vm = self._vm(name)
        return self._info(vm) if vm is not None else None

    @_renewing
    def list_owned(self, owner: str) -> list[VMInfo]:
        """Every VM in the folder stamped with ``owner``, read in one call: another pool
        may delete its VMs meanwhile, and a VM that vanished is simply absent."""
        infos = [self._info_from(props) for props in self._in_folder(VM_PROPERTIES).values()]
        return sorted((i for i in infos if i.owner == owner), key=lambda v: v.name)

    def _guestinfo(self, req: VMRequest) -> list[vim.option.OptionValue]:
        def b64(text: str) -> str:
            return base64.b64encode(text.encode()).decode()
        values = {OWNER_KEY: req.owner, IMAGE_KEY: req.image,
                  "guestinfo.userdata": b64(cloudinit.user_data(req.seed)),
                  "guestinfo.userdata.encoding": "base64",
                  "guestinfo.metadata": b64(cloudinit.meta_data(req.seed)),
                  "guestinfo.metadata.encoding": "base64"}
        return [vim.option.OptionValue(key=k, value=v) for k, v in values.items()]

    def _static_network(self, vm: vim.VirtualMachine, req: VMRequest) -> None:
        """The static address goes into guestinfo.metadata bound to the NIC's MAC, which
        vCenter only assigns while cloning: read it back, then write the metadata."""
        devices = self._props(vm, "config.hardware.device").get("config.hardware.device") or []
        macs = [d.macAddress for d in devices if isinstance(d, vim.vm.device.VirtualEthernetCard) and d.macAddress]
        if not macs:
            raise HypervisorError(f"{req.name}: the clone has no network card with a MAC address; "
                                  "a static address cannot be bound to it")
        seed = replace(req.seed, network=replace(req.seed.network, mac=macs[0]))
        metadata = base64.b64encode(cloudinit.meta_data(seed, with_network=True).encode()).decode()
        config = vim.vm.ConfigSpec(extraConfig=[vim.option.OptionValue(key="guestinfo.metadata", value=metadata)])
        self._wait(vm.ReconfigVM_Task(spec=config), f"{req.name}: static address {seed.network.address}")

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
            raise no_shrink(vm.name, round(disk.capacityInKB / KIB_PER_GB), disk_gb)
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
                raise not_ours(req.name, owner, req.owner)
            return self._info(existing)
        template = self._template(req.image)
        snapshot = _snapshot(template) if self.linked_clone else None
        spec = vim.vm.CloneSpec(location=self._relocate(template), powerOn=False, template=False, snapshot=snapshot)
        with _FOLDERS.using():
            folder = self._ensure_folder()
            vm = self._wait(template.CloneVM_Task(folder=folder, name=req.name, spec=spec),
                            f"{req.name}: clone from {req.image!r}")
        try:
            config = vim.vm.ConfigSpec(
                numCPUs=req.cpus, memoryMB=req.memory_mb, extraConfig=self._guestinfo(req),
                annotation=f"Managed by vmkube ({req.owner}). Do not edit by hand.",
                deviceChange=[self._nic_change(vm), *self._disk_change(vm, req.disk_gb)])
            self._wait(vm.ReconfigVM_Task(spec=config), f"{req.name}: configure")
            if req.seed.network is not None:
                self._static_network(vm, req)
        except Exception:
            # Not yet stamped with its owner: nothing would ever find it again.
            self._wait(vm.Destroy_Task(), f"{req.name}: remove the half-configured clone")
            raise
        self._set_attributes(vm, {})
        self._wait(vm.PowerOnVM_Task(), f"{req.name}: power on")
        return self._info(vm)

    def _relocate(self, template: vim.VirtualMachine) -> vim.vm.RelocateSpec:
        """Where the clone goes; with a storage policy, its home and every disk get the policy."""
        relocate = vim.vm.RelocateSpec(pool=self.pool, datastore=self.datastore)
        if self.linked_clone:
            relocate.diskMoveType = "createNewChildDiskBacking"
        if self.profile is not None:
            policy = [vim.vm.DefinedProfileSpec(profileId=self.profile.uniqueId)]
            devices = self._props(template, "config.hardware.device").get("config.hardware.device") or []
            relocate.profile = policy
            relocate.disk = [vim.vm.RelocateSpec.DiskLocator(diskId=d.key, datastore=self.datastore, profile=policy)
                             for d in devices if isinstance(d, vim.vm.device.VirtualDisk)]
        return relocate

    # -- VM folders ----------------------------------------------------------------

    def _ensure_folder(self) -> vim.Folder:
        """The VM folder, creating each missing level under the datacenter's VM folder and
        marking it as vmkube's (FOLDER_MARK). Called while holding _FOLDERS.using()."""
        if self.folder is not None and self._props(self.folder, "name"):
            return self.folder
        with _FOLDERS.create:
            # Looked up again: another pool may have made (or removed) levels meanwhile.
            self.folder, base, missing = self._locate_folder()
            if self.folder is not None:
                return self.folder
            mark = self._ensure_field(FOLDER_MARK, vim.Folder, "vmkube:vsphere.folder")
            for level in missing:
                base = self._create_level(base, level, mark)
            self.folder, self._folder_base, self._folder_missing = base, base, []
            return base

    def _create_level(self, parent: vim.Folder, name: str, mark: int) -> vim.Folder:
        try:
            child = parent.CreateFolder(name)
        except vim.fault.DuplicateName as exc:
            return exc.object  # made meanwhile by someone else: not vmkube's to mark or remove
        try:
            self.content.customFieldsManager.SetField(entity=child, key=mark, value=FOLDER_MARK_VALUE)
        except vmodl.MethodFault as exc:
            # An unmarked folder would never be removed: take it back while it is empty.
            self._wait(child.Destroy_Task(), f"VM folder {name!r}: remove the unmarked new folder")
            raise HypervisorError(f"vmkube:vsphere.folder: cannot mark the new folder {name!r} as vmkube's: "
                                  f"{_fault_text(exc)}") from None
        log.info("VM folder %s: created", name)
        return child

    def _prune_folders(self) -> None:
        """Removes the VM folder and its parents while each is empty and marked as vmkube's,
        deepest first; stops at the first one that holds anything or that vmkube did not
        create, and never touches the datacenter's VM folder."""
        if self.folder is None or self.folder == self.vm_root:
            return
        mark = self._field_key(FOLDER_MARK, vim.Folder)
        if mark is None:  # vmkube never created a folder in this vCenter
            return
        with _FOLDERS.pruning():
            folder = self.folder  # again: a parallel destroy may have pruned it meanwhile
            while folder is not None and folder != self.vm_root:
                props = self._props(folder, "name", "parent", "childEntity", "customValue")
                ours = any(v.key == mark for v in props.get("customValue") or [])
                if not props or props.get("childEntity") or not ours:
                    break
                try:
                    self._wait(folder.Destroy_Task(), f"VM folder {props['name']!r}: remove (empty, made by vmkube)")
                except vmodl.fault.ManagedObjectNotFound:
                    pass
                except HypervisorError as exc:
                    log.warning("%s; left in place", exc)  # the VMs are gone; a folder left over is no failure
                    break
                log.info("VM folder %s: removed (empty, made by vmkube)", props["name"])
                folder = props["parent"]
            self.folder, self._folder_base, self._folder_missing = self._locate_folder()

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
        if info is None:
            raise VMNotFound(name)
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
            # One slow answer from vCenter (a busy or simulated one: seen as a 60 s read
            # timeout) is not the VM failing: ask again until the wait's own deadline.
            try:
                vm = self.find(name)
            except (TimeoutError, ConnectionError) as exc:
                log.warning("%s: vCenter did not answer (%s); asking again", name, exc)
                return ""
            return vm.ip if vm is not None else ""
        return poll(f"{name}: IP address from VMware Tools", probe, timeout)

    @_renewing
    def destroy(self, name: str, owner: str) -> None:
        """Destroys the VM, then the VM folders vmkube made that it leaves empty (also when
        the VM was gone already: an earlier run may have stopped in between)."""
        self._destroy_vm(name, owner)
        self._prune_folders()

    def _destroy_vm(self, name: str, owner: str) -> None:
        vm = self._vm(name)
        if vm is None:
            return
        if self._extra(vm).get(OWNER_KEY) != owner:
            raise not_ours(name, self._extra(vm).get(OWNER_KEY, ""), owner)
        if vm.runtime.powerState != vim.VirtualMachinePowerState.poweredOff:
            self._wait(vm.PowerOffVM_Task(), f"{name}: power off")
        try:
            self._wait(vm.Destroy_Task(), f"{name}: destroy")
        except vmodl.fault.ManagedObjectNotFound:
            pass

    # -- what spans the pool -----------------------------------------------------

    @_renewing
    def place(self, owner: str, names: Sequence[str], anti_affinity: bool) -> None:
        """The pool's custom attributes on each of its VMs, and its anti-affinity rule
        following its members (removed when it has fewer than two or wants none)."""
        found = self._in_folder(("name", "config.extraConfig", "customValue"))
        members = {}
        for vm, props in found.items():
            extra = {o.key: str(o.value) for o in props.get("config.extraConfig") or []}
            if props.get("name") in names and extra.get(OWNER_KEY) == owner:
                members[props["name"]] = (vm, {v.key: v.value for v in props.get("customValue") or []})
        if self.attributes:
            for vm, have in members.values():
                self._set_attributes(vm, have)
        self._spread(owner, [vm for _, (vm, _) in sorted(members.items())], anti_affinity)

    def _spread(self, owner: str, vms: list[vim.VirtualMachine], wanted: bool) -> None:
        """Keeps the DRS VM-VM anti-affinity rule named after the pool's owner in step with
        its members. vmkube only ever touches the rule of that name. (vcsim stores rules but
        places no VM by them: the tests can show the rule, not the placement.)"""
        if self.cluster is None:
            return  # a standalone host: nothing to spread over
        config = self._props(self.cluster, "configurationEx").get("configurationEx")
        rule = next((r for r in getattr(config, "rule", None) or [] if r.name == owner), None)
        keep = wanted and len(vms) >= 2
        op = vim.option.ArrayUpdateSpec.Operation
        if rule is None and not keep:
            return
        if not keep:
            change = vim.cluster.RuleSpec(operation=op.remove, removeKey=rule.key)
            what = "removed"
        else:
            info = vim.cluster.AntiAffinityRuleSpec(name=owner, enabled=True, vm=vms)
            if rule is not None and rule.enabled and {v._moId for v in rule.vm or []} == {v._moId for v in vms}:
                return
            if rule is not None:
                info.key = rule.key
            change = vim.cluster.RuleSpec(operation=op.add if rule is None else op.edit, info=info)
            what = f"{'created' if rule is None else 'updated'} for {len(vms)} VMs"
        label = self._labels[self.cluster._moId]
        self._wait(self.cluster.ReconfigureComputeResource_Task(spec=vim.cluster.ConfigSpecEx(rulesSpec=[change]),
                                                               modify=True),
                   f"{owner}: anti-affinity rule on {label}")
        log.info("%s: anti-affinity rule on %s %s", owner, label, what)

