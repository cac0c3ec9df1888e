"""Small titled phases run over nodes in parallel (k0sctl's way).

A phase decides up front which nodes it applies to and is skipped when none
do; on each node it reads facts first and does only what is missing
(pyinfra's way). Every log line starts with the node; a phase that fails on
some nodes ends the run with one error listing each failed node and why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Protocol

from .pool import fan_out
from .ssh import Session

log = logging.getLogger("vmkube.phases")


@dataclass
class Node:
    name: str
    role: str  # "control-plane" or "worker"
    address: str
    session: Session


class Phase(Protocol):
    title: str

    def applies(self, node: Node) -> bool: ...
    def run(self, node: Node) -> None: ...


def run_phases(nodes: Iterable[Node], phases: Iterable[Phase]) -> None:
    nodes = list(nodes)
    for phase in phases:
        targets = {n.name: n for n in nodes if phase.applies(n)}
        if not targets:
            log.info("%s: no node needs it, skipped", phase.title)
            continue
        log.info("%s on %d node%s", phase.title, len(targets), "s" if len(targets) != 1 else "")
        fan_out(list(targets), lambda name: phase.run(targets[name]), phase.title)
