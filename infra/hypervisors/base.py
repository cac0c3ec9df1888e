"""The one interface both backends implement, and the data it speaks.

VMs are found by name and carry an owner tag set at creation; a VM with the
right name but another owner is never touched. Deleting a VM that is already
gone is success.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, TypeVar

from infra.errors import HypervisorError

from .cloudinit import NodeSeed

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
    def close(self) -> None: ...


def poll(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 1.0) -> T:
    """Calls probe until it returns a value, or raises naming what it waited for."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise HypervisorError(f"{what}: not there after {timeout:.0f}s")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
