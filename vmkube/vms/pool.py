"""Converges a pool of node VMs on one hypervisor, all nodes in parallel.

A pool is a set of same-sized VMs stamped with one owner tag. ``converge``
reads each VM first and does only what is missing: create, power on, resize;
it removes owned VMs that left the pool (or, when Kubernetes must drain them
first, reports them as leaving), waits for every IP, and reports all failed
nodes at once. Each node's SSH host key is generated once and kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Mapping

from vmkube.errors import HypervisorError, VmkubeError
from vmkube.parallel import fan_out

from vmkube.contracts import PoolSpec, StaticNetwork
from vmkube.vms.base import Hypervisor, VMInfo, VMRequest, no_shrink, not_ours
from vmkube.vms.cloudinit import NodeSeed, StaticNic
from vmkube.sshkeys import KeyPair, generate_ed25519

log = logging.getLogger("vmkube.pool")
IP_TIMEOUT = 600.0


@dataclass(frozen=True)
class PoolState:
    vms: list[VMInfo]
    host_keys: dict[str, KeyPair]
    leaving: list[str] = field(default_factory=list)  # owned VMs no longer in the pool, kept for draining

    def outputs(self) -> dict:
        return {"vms": [vm.as_output() for vm in self.vms], "leaving": list(self.leaving),
                "hostPublicKeys": {n: k.public_openssh for n, k in sorted(self.host_keys.items())},
                "hostPrivateKeys": {n: k.private_openssh for n, k in sorted(self.host_keys.items())}}


def host_keys_from(outputs: Mapping | None) -> dict[str, KeyPair]:
    outputs = outputs or {}
    private = outputs.get("hostPrivateKeys") or {}
    public = outputs.get("hostPublicKeys") or {}
    return {n: KeyPair(private[n], public[n]) for n in private if n in public}


def converge(hv: Hypervisor, spec: PoolSpec, keys: Mapping[str, KeyPair] | None = None, *,
             rollback: bool = False, ip_timeout: float = IP_TIMEOUT) -> PoolState:
    """Brings the hypervisor to the pool spec. With ``rollback``, VMs this call
    created are removed again when any node fails (a failed first create leaves nothing).
    With ``spec.keep_leaving``, owned VMs that left the pool stay (and are reported) so that
    their Kubernetes node can be drained before ``remove_leaving`` destroys them."""
    keys = dict(keys or {})
    for name in spec.names:
        keys.setdefault(name, generate_ed25519(comment=name))
    hv.prepare(spec.image)
    created: list[str] = []
    static = spec.address_of()

    def one(name: str) -> VMInfo:
        vm = hv.find(name)
        if vm is not None and vm.owner != spec.owner:
            raise not_ours(name, vm.owner, spec.owner)
        if vm is None:
            log.info("%s: creating VM (%d CPU, %d MiB, %d GB) from %s", name, spec.cpus,
                     spec.memory_mb, spec.disk_gb, spec.image)
            seed = NodeSeed(hostname=name, instance_id=name, user=spec.ssh_user,
                            authorized_key=spec.ssh_public_key, host_key_private=keys[name].private_openssh,
                            host_key_public=keys[name].public_openssh, network=_nic(spec, static.get(name)))
            created.append(name)
            hv.create(VMRequest(name=name, owner=spec.owner, cpus=spec.cpus, memory_mb=spec.memory_mb,
                                disk_gb=spec.disk_gb, image=spec.image, seed=seed))
        else:
            if (vm.cpus, vm.memory_mb, vm.disk_gb) != (spec.cpus, spec.memory_mb, spec.disk_gb):
                if spec.disk_gb < vm.disk_gb:
                    raise no_shrink(f"{spec.config_path}.diskGb", vm.disk_gb, spec.disk_gb)
                log.info("%s: resizing VM to %d CPU, %d MiB, %d GB (power cycle)", name,
                         spec.cpus, spec.memory_mb, spec.disk_gb)
                hv.resize(name, spec.cpus, spec.memory_mb, spec.disk_gb)
            # resize puts the power state back as it found it: the first read still holds.
            if vm.power != "on":
                log.info("%s: powering on", name)
                hv.power_on(name)
        if name in static:
            # Its address is the one it was given; SSH is what proves it is up.
            log.info("%s: running, static address %s", name, static[name])
            return _with_address(hv.find(name), static)
        ip = hv.wait_ip(name, ip_timeout)
        log.info("%s: running at %s", name, ip)
        return hv.find(name)

    try:
        extra = [vm.name for vm in hv.list_owned(spec.owner) if vm.name not in spec.names]
        if extra and spec.keep_leaving:
            log.info("%s: left the pool; kept until its node is drained", ", ".join(extra))
        else:
            fan_out(extra, lambda name: _remove(hv, spec.owner, name), "removing VMs")
        vms = fan_out(list(spec.names), one, "converging VMs")
    except VmkubeError as failure:
        if rollback and created:
            log.info("rolling back %d VM(s) created by this run", len(created))
            try:
                fan_out(list(created), lambda name: hv.destroy(name, spec.owner), "rolling back")
                hv.release(spec.image)
            except VmkubeError as undo:
                # Both matter: what failed, and what the failed rollback left behind.
                raise HypervisorError(f"{failure}\nand rolling back then failed too: {undo}") from None
        raise
    # Placement follows the members that exist now: created, kept, and no longer the removed ones.
    hv.place(spec.owner, list(spec.names), spec.anti_affinity)
    kept = {n: keys[n] for n in spec.names}
    leaving = extra if spec.keep_leaving else []
    return PoolState(vms=[vms[n] for n in spec.names], host_keys=kept, leaving=leaving)  # type: ignore[misc]


def _nic(spec: PoolSpec, address: str | None) -> StaticNic | None:
    net = spec.network
    if address is None or not isinstance(net, StaticNetwork):
        return None
    return StaticNic(address=address, prefix=net.prefix, gateway=net.gateway,
                     dns_servers=net.dns_servers, search_domains=net.search_domains)


def _with_address(vm: VMInfo | None, static: Mapping[str, str]) -> VMInfo | None:
    """A VM on a static address reports that address (a network without DHCP leases none)."""
    if vm is None or vm.name not in static or vm.power != "on":
        return vm
    return replace(vm, ip=static[vm.name])


def _remove(hv: Hypervisor, owner: str, name: str) -> None:
    log.info("%s: removing VM (left the pool)", name)
    hv.destroy(name, owner)


def remove_leaving(hv: Hypervisor, owner: str, names: list[str]) -> None:
    """Destroys VMs that left the pool once their nodes are drained."""
    fan_out(sorted(names), lambda name: _remove(hv, owner, name), "removing VMs")


def observe(hv: Hypervisor, spec: PoolSpec) -> list[VMInfo]:
    """What exists of the pool now, for refresh: missing VMs are simply absent."""
    found = {vm.name: vm for vm in hv.list_owned(spec.owner)}
    static = spec.address_of()
    return [_with_address(found[n], static) for n in spec.names if n in found]  # type: ignore[misc]


def remove_all(hv: Hypervisor, owner: str, names: list[str], image: str) -> None:
    """Destroys the pool: every VM it names and every VM still stamped with its
    owner; then frees the base image if no other VM uses it."""
    everything = sorted(set(names) | {vm.name for vm in hv.list_owned(owner)})
    fan_out(everything, lambda name: _remove_quiet(hv, owner, name), "destroying VMs")
    hv.place(owner, [], False)  # no members left: no rule
    hv.release(image)


def _remove_quiet(hv: Hypervisor, owner: str, name: str) -> None:
    vm = hv.find(name)
    if vm is not None and vm.owner != owner:
        log.warning("%s: a VM of that name belongs to %s; leaving it alone", name, vm.owner or "something else")
        return
    log.info("%s: destroying VM", name)
    hv.destroy(name, owner)
