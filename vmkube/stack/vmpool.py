"""The node VMs of one pool as a single Pulumi resource.

All dynamic resources of a stack share one provider process with four worker
threads, so a resource per VM would create at most four VMs at a time. A pool
resource creates, resizes and removes its VMs in parallel inside one call.

The provider classes are pickled into state: keep them here, under these names,
with no state of their own. Each builds its hypervisor connection inside each
method. Inputs are read through vmkube.contracts; in check and diff any of them
may be unknown (a preview), which counts as a change and is never iterated.
"""

from __future__ import annotations

from typing import Any, Optional

import pulumi
from pulumi.dynamic import (CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, Resource,
                            ResourceProvider, UpdateResult)

from vmkube.contracts import (UNKNOWN, LeavingInputs, PoolSpec, changed_fields, hypervisor_from_props,
                              hypervisor_identity, hypervisor_to_props, is_unknown)
from vmkube.vms import connect, pool
from vmkube.vms.base import no_shrink

from vmkube.stack.progress import show_progress
from vmkube.stack.unknowns import marked

SIZE_FIELDS = ("cpus", "memory_mb", "disk_gb")
SIZE_KEYS = ("cpus", "memoryMb", "diskGb")
CONTROL_PLANE_PATH = "vmkube:controlPlane"


class _Session:
    """One hypervisor connection for the duration of one provider call."""

    def __init__(self, hypervisor: Any):
        show_progress()
        settings = hypervisor_from_props(hypervisor) if isinstance(hypervisor, dict) else hypervisor
        self.hv = connect.open_hypervisor(settings)

    def __enter__(self):
        return self.hv

    def __exit__(self, *_exc: object) -> None:
        self.hv.close()


def drifted(olds: dict[str, Any], spec: PoolSpec) -> bool:
    """True when the VMs last seen (after a refresh) differ from what the inputs ask for."""
    vms = olds.get("vms") or []
    if spec.names is UNKNOWN or [vm.get("name") for vm in vms] != list(spec.names):
        return True
    want = {"power": "on", **{k: getattr(spec, f) for k, f in zip(SIZE_KEYS, SIZE_FIELDS)}}
    return any(is_unknown(v) or vm.get(k) != v for vm in vms for k, v in want.items())


def readdressed(old: PoolSpec, new: PoolSpec) -> bool:
    """A node that stays in the pool would get another static address: cloud-init set the
    address on the VM's first boot, so only a new VM takes the new one."""
    if is_unknown(new.addresses) or is_unknown(new.names) or is_unknown(old.addresses):
        return new.network is not None
    before, after = old.address_of(), new.address_of()
    return any(before.get(n) != a for n, a in after.items() if n in before)


class VmPoolProvider(ResourceProvider):
    serialize_as_secret_always = False

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        old, new = (PoolSpec.from_props(marked(olds)) if olds else None), PoolSpec.from_props(marked(news))
        failures = []
        if (old is not None and new.config_path == CONTROL_PLANE_PATH
                and UNKNOWN not in (old.names, new.names) and len(old.names) != len(new.names)):
            # etcd members would have to join or leave one by one; vmkube sets the control plane up once.
            before, after = len(old.names), len(new.names)
            failures.append(CheckFailure(
                "names", f"{CONTROL_PLANE_PATH}.count: the control plane of an existing cluster keeps its size "
                         f"(from {before} to {after}); keep {before}, or create a new stack"))
        if old is not None and UNKNOWN not in (old.disk_gb, new.disk_gb) and None not in (old.disk_gb, new.disk_gb) \
                and new.disk_gb < old.disk_gb:
            failures.append(CheckFailure("diskGb", str(no_shrink(f"{new.config_path}.diskGb", old.disk_gb,
                                                                  new.disk_gb))))
        return CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec = PoolSpec.from_props(props)
        with _Session(spec.hypervisor) as hv:
            state = pool.converge(hv, spec, rollback=True)
        return CreateResult(id_=spec.owner, outs={**props, **state.outputs()})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        old, new = PoolSpec.from_props(marked(olds)), PoolSpec.from_props(marked(news))
        replaces = [k for k, f in (("owner", "owner"), ("image", "image"), ("network", "network"))
                    if changed_fields(old, new, (f,))]
        if "network" not in replaces and readdressed(old, new):
            replaces.append("addresses")
        ids = hypervisor_identity(old.hypervisor), hypervisor_identity(new.hypervisor)
        # Unknown settings are an update: whether they name another place is known at `up`.
        unknown_place = UNKNOWN in ids[0] + ids[1]
        if not unknown_place and ids[0] != ids[1]:
            replaces.append("hypervisor")
        # SSH user and key only matter to VMs created later: no update for them alone.
        changed = changed_fields(old, new, ("names", *SIZE_FIELDS, "anti_affinity"))
        # Other connection settings (custom attributes, a storage policy, credentials) are an update
        # in the same place: converge brings the pool's VMs and rules up to date.
        if unknown_place or (old.hypervisor is not None and new.hypervisor is not None
                             and hypervisor_to_props(old.hypervisor) != hypervisor_to_props(new.hypervisor)):
            changed.append("hypervisor")
        return DiffResult(changes=bool(replaces or changed or drifted(olds, new)), replaces=replaces,
                          delete_before_replace=True)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        spec = PoolSpec.from_props(news)
        with _Session(spec.hypervisor) as hv:
            state = pool.converge(hv, spec, pool.host_keys_from(olds))
        return UpdateResult(outs={**news, **state.outputs()})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        spec = PoolSpec.from_props(props)
        with _Session(spec.hypervisor) as hv:
            vms = pool.observe(hv, spec)
        return ReadResult(id_, {**props, "vms": [vm.as_output() for vm in vms]})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        spec = PoolSpec.from_props(props)
        with _Session(spec.hypervisor) as hv:
            pool.remove_all(hv, spec.owner, list(spec.names), spec.image)


def _secret_password(hypervisor: dict[str, Any]) -> dict[str, Any]:
    return {**hypervisor, "password": pulumi.Output.secret(hypervisor["password"])}


class LeavingVmsProvider(ResourceProvider):
    """Destroys the VMs that left their pools, once Kubernetes has drained their nodes."""
    serialize_as_secret_always = False

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_="leaving", outs=self._remove(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # Only VMs not removed before are work; a VM that is gone stays gone.
        done = set(LeavingInputs.from_props(marked(olds)).removed)
        new = LeavingInputs.from_props(marked(news))
        if new.pools is UNKNOWN or any(p.leaving is UNKNOWN for p in new.pools):
            return DiffResult(changes=True)
        return DiffResult(changes=any(name not in done for p in new.pools for name in p.leaving))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._remove(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Pools destroy their own VMs, leaving or not."""

    @staticmethod
    def _remove(props: dict[str, Any]) -> dict[str, Any]:
        removed = []
        for p in LeavingInputs.from_props(props).pools:
            if p.leaving:
                with _Session(p.hypervisor) as hv:
                    pool.remove_leaving(hv, p.owner, list(p.leaving))
                removed += p.leaving
        return {**props, "removed": sorted(removed)}


class LeavingVms(Resource, module="vmkube", name="LeavingVms"):
    removed: pulumi.Output[list]

    def __init__(self, name: str, pools: list[VmPool], opts: Optional[pulumi.ResourceOptions] = None):
        entries = [{"hypervisor": p.hypervisor_props, "owner": p.owner, "leaving": p.leaving} for p in pools]
        secret = any("password" in p.hypervisor_props for p in pools)
        super().__init__(LeavingVmsProvider(), name, {"pools": entries, "removed": None},
                         pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
                             additional_secret_outputs=["pools"] if secret else [])))


class VmPool(Resource, module="vmkube", name="VmPool"):
    owner: pulumi.Output[str]
    vms: pulumi.Output[list]
    leaving: pulumi.Output[list]
    hostPublicKeys: pulumi.Output[dict]
    hostPrivateKeys: pulumi.Output[dict]

    def __init__(self, name: str, spec: PoolSpec, ssh_public_key: pulumi.Input[str],
                 opts: Optional[pulumi.ResourceOptions] = None):
        secret = ["hostPrivateKeys"]
        props = spec.to_props()
        hypervisor = props["hypervisor"]
        if "password" in hypervisor:
            hypervisor = _secret_password(hypervisor)
            secret.append("hypervisor")
        self.hypervisor_props = hypervisor
        props.update(hypervisor=hypervisor, sshPublicKey=ssh_public_key,
                     vms=None, leaving=None, hostPublicKeys=None, hostPrivateKeys=None)
        super().__init__(VmPoolProvider(), name, props,
                         pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
                             additional_secret_outputs=secret)))
