"""The one interface both backends implement, and the data it speaks.

VMs are found by name and carry an owner tag set at creation; a VM with the
right name but another owner is never touched. Deleting a VM that is already
gone is success.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence, TypeVar

from vmkube.errors import HypervisorError
from vmkube.waiting import wait_for

from vmkube.vms.cloudinit import NodeSeed

T = TypeVar("T")


@dataclass(frozen=True)
class VMRequest:
    name: str
    owner: str       # e.g. "vmkube/local/worker": what vmkube stamps on the VM
    cpus: int
    memory_mb: int
    disk_gb: int
    image: str       # vSphere template name, or libvirt base image directory/volume
    seed: NodeSeed = field(repr=False)


@dataclass(frozen=True)
class VMInfo:
    name: str
    owner: str
    power: str       # "on" or "off"
    cpus: int
    memory_mb: int
    disk_gb: int
    image: str = ""
    ip: str = ""
    mac: str = ""
    id: str = ""     # the hypervisor's own ID: libvirt UUID or vSphere instance UUID

    def as_output(self) -> dict:
        return {"name": self.name, "id": self.id, "ip": self.ip, "mac": self.mac,
                "power": self.power, "cpus": self.cpus, "memoryMb": self.memory_mb,
                "diskGb": self.disk_gb, "image": self.image}


def not_ours(name: str, owner: str, expected: str) -> HypervisorError:
    """A VM of that name exists but another owner stamped it: vmkube never touches it."""
    return HypervisorError(f"{name}: a VM of that name belongs to {owner or 'something else'}, not {expected}; "
                           "not touching it")


def no_shrink(where: str, have_gb: int, want_gb: int) -> HypervisorError:
    """Disks only grow: shrinking one would cut off its filesystem."""
    return HypervisorError(f"{where}: disks cannot shrink (from {have_gb} to {want_gb} GB); keep {have_gb} or more")


class Hypervisor(Protocol):
    def prepare(self, image: str) -> None: ...
    def release(self, image: str) -> None: ...
    def find(self, name: str) -> VMInfo | None: ...
    def list_owned(self, owner: str) -> list[VMInfo]: ...
    def create(self, req: VMRequest) -> VMInfo: ...
    def power_on(self, name: str) -> None: ...
    def power_off(self, name: str) -> None: ...
    def resize(self, name: str, cpus: int, memory_mb: int, disk_gb: int) -> None: ...
    def wait_ip(self, name: str, timeout: float) -> str: ...
    def destroy(self, name: str, owner: str) -> None: ...
    def place(self, owner: str, names: Sequence[str], anti_affinity: bool) -> None:
        """Keeps what spans the pool's VMs in step with its members, once they converged
        (or, with no names, once the pool is gone): on vSphere the DRS anti-affinity
        rule that spreads them over hosts, and their custom attributes."""
    def close(self) -> None: ...


def poll(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 1.0) -> T:
    """Calls probe until it returns a value, or raises HypervisorError naming what it waited for."""
    def attempt() -> tuple[bool, T | None]:
        value = probe()
        return bool(value), value
    return wait_for(what, attempt, timeout=timeout, interval=interval, error=HypervisorError)
