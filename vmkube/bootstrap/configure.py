"""Phase: every node's binaries, certificates and configuration files, only the delta.

Kernel settings (sysctl, modules) apply as soon as their files change; services
restart in later phases from what changed here."""

from __future__ import annotations

from vmkube.nodes.files import Files
from vmkube.nodes.phases import Command, Node, Step

from vmkube.bootstrap.desired import Desired

KERNEL_PATHS = ("/etc/sysctl.d/", "/etc/modules-load.d/")
KERNEL_RELOAD = Command("modprobe br_netfilter && modprobe overlay && sysctl --system >/dev/null",
                        why="loading kernel modules and sysctl settings")


def kernel_steps(_node: Node, changed: list[str]) -> list[Step]:
    return [KERNEL_RELOAD] if any(p.startswith(KERNEL_PATHS) for p in changed) else []


def configure(desired: Desired) -> Files:
    """The files phase over the run's desired files; what changed lands in ``desired.changed``."""
    return Files("install binaries, certificates and configuration", desired.files_for, on_change=kernel_steps,
                 changed=desired.changed)
