"""The node VMs of one pool as a single Pulumi resource.

All dynamic resources of a stack share one provider process with four worker
threads, so a resource per VM would create at most four VMs at a time. A pool
resource creates, resizes and removes its VMs in parallel inside one call.

The provider class is pickled into state: keep it here, under this name, with
no state of its own. It builds its hypervisor connection inside each method.
"""

from __future__ import annotations

from typing import Any, Optional

import pulumi
from pulumi.dynamic import (CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, Resource,
                            ResourceProvider, UpdateResult)

from infra import pool
from infra.hypervisors import connect

from .progress import show_progress

SIZE_KEYS = ("cpus", "memoryMb", "diskGb")


def _spec(props: dict[str, Any]) -> pool.PoolSpec:
    return pool.PoolSpec(owner=props["owner"], names=tuple(props["names"]), cpus=int(props["cpus"]),
                         memory_mb=int(props["memoryMb"]), disk_gb=int(props["diskGb"]),
                         image=props["image"], ssh_user=props["sshUser"],
                         ssh_public_key=props["sshPublicKey"], config_path=props.get("configPath", ""))


class _Session:
    """One hypervisor connection for the duration of one provider call."""

    def __init__(self, props: dict[str, Any]):
        show_progress()
        self.hv = connect.open_hypervisor(props["hypervisor"])

    def __enter__(self):
        return self.hv

    def __exit__(self, *_exc: object) -> None:
        self.hv.close()


def drifted(olds: dict[str, Any], news: dict[str, Any]) -> bool:
    """True when the VMs last seen (after a refresh) differ from what the inputs ask for."""
    vms = olds.get("vms") or []
    if [vm.get("name") for vm in vms] != list(news.get("names") or []):
        return True
    want = {"power": "on", **{k: news.get(k) for k in SIZE_KEYS}}
    return any(vm.get(k) != v for vm in vms for k, v in want.items())


class VmPoolProvider(ResourceProvider):
    serialize_as_secret_always = False

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        before, after = len((olds or {}).get("names") or []), len(news.get("names") or [])
        if news.get("configPath") == "vmkube:controlPlane" and olds and after != before:
            # etcd members would have to join or leave one by one; vmkube sets the control plane up once.
            failures.append(CheckFailure(
                "names", f"vmkube:controlPlane.count: the control plane of an existing cluster keeps its size "
                         f"(from {before} to {after}); keep {before}, or create a new stack"))
        # Numbers cross the engine as floats.
        old, new = olds.get("diskGb") if olds else None, news.get("diskGb")
        if old is not None and new is not None and int(new) < int(old):
            failures.append(CheckFailure(
                "diskGb", f"{news.get('configPath', '')}.diskGb: disks cannot shrink "
                          f"(from {int(old)} to {int(new)} GB); keep {int(old)} or more"))
        return CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        with _Session(props) as hv:
            state = pool.converge(hv, _spec(props), rollback=True)
        return CreateResult(id_=props["owner"], outs={**props, **state.outputs()})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in ("owner", "image") if olds.get(k) != news.get(k)]
        if connect.identity(olds.get("hypervisor") or {}) != connect.identity(news.get("hypervisor") or {}):
            replaces.append("hypervisor")
        # SSH user and key only matter to VMs created later: no update for them alone.
        changed = [k for k in ("names", *SIZE_KEYS) if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(replaces or changed or drifted(olds, news)), replaces=replaces,
                          delete_before_replace=True)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        with _Session(news) as hv:
            state = pool.converge(hv, _spec(news), pool.host_keys_from(olds),
                                  keep_leaving=bool(news.get("keepLeaving")))
        return UpdateResult(outs={**news, **state.outputs()})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with _Session(props) as hv:
            vms = pool.observe(hv, _spec(props))
        return ReadResult(id_, {**props, "vms": [vm.as_output() for vm in vms]})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        with _Session(props) as hv:
            pool.remove_all(hv, props["owner"], list(props.get("names") or []), props["image"])


def _secret_password(hypervisor: dict[str, Any]) -> dict[str, Any]:
    return {**hypervisor, "password": pulumi.Output.secret(hypervisor["password"])}


class LeavingVmsProvider(ResourceProvider):
    """Destroys the VMs that left their pools, once Kubernetes has drained their nodes."""
    serialize_as_secret_always = False

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_="leaving", outs=self._remove(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # Only VMs not removed before are work; a VM that is gone stays gone.
        done = set(olds.get("removed") or [])
        return DiffResult(changes=any(name not in done for p in news.get("pools") or []
                                      for name in p.get("leaving") or []))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._remove(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Pools destroy their own VMs, leaving or not."""

    @staticmethod
    def _remove(props: dict[str, Any]) -> dict[str, Any]:
        removed = []
        for p in props.get("pools") or []:
            if p.get("leaving"):
                with _Session(p) as hv:
                    pool.remove_leaving(hv, p["owner"], list(p["leaving"]))
                removed += p["leaving"]
        return {**props, "removed": sorted(removed)}


class LeavingVms(Resource, module="vmkube", name="LeavingVms"):
    removed: pulumi.Output[list]

    def __init__(self, name: str, pools: list[VmPool], hypervisor: dict[str, Any],
                 opts: Optional[pulumi.ResourceOptions] = None):
        if "password" in hypervisor:
            hypervisor = _secret_password(hypervisor)
        entries = [{"hypervisor": hypervisor, "owner": p.owner, "leaving": p.leaving} for p in pools]
        super().__init__(LeavingVmsProvider(), name, {"pools": entries, "removed": None},
                         pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
                             additional_secret_outputs=["pools"] if "password" in hypervisor else [])))


class VmPool(Resource, module="vmkube", name="VmPool"):
    owner: pulumi.Output[str]
    vms: pulumi.Output[list]
    leaving: pulumi.Output[list]
    hostPublicKeys: pulumi.Output[dict]
    hostPrivateKeys: pulumi.Output[dict]

    def __init__(self, name: str, *, hypervisor: dict[str, Any], owner: str, names: list[str], cpus: int,
                 memory_mb: int, disk_gb: int, image: str, ssh_user: str, ssh_public_key: pulumi.Input[str],
                 config_path: str, keep_leaving: bool = False, opts: Optional[pulumi.ResourceOptions] = None):
        secret = ["hostPrivateKeys"]
        if "password" in hypervisor:
            hypervisor = _secret_password(hypervisor)
            secret.append("hypervisor")
        props = {"hypervisor": hypervisor, "keepLeaving": keep_leaving, "owner": owner, "names": names, "cpus": cpus,
                 "memoryMb": memory_mb, "diskGb": disk_gb, "image": image, "sshUser": ssh_user,
                 "sshPublicKey": ssh_public_key, "configPath": config_path,
                 "vms": None, "leaving": None, "hostPublicKeys": None, "hostPrivateKeys": None}
        super().__init__(VmPoolProvider(), name, props,
                         pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
                             additional_secret_outputs=secret)))
