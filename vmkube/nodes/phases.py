"""Small titled phases run over nodes (k0sctl's way), each deciding from facts (pyinfra's way).

A phase decides up front which nodes it applies to and is skipped when none do.
On each node it reads its facts (named commands with pure parsers), then a pure
``decide(node, facts)`` returns the commands still needed, and only those run:
a second run over a converged node decides nothing, which the unit tables prove
for every phase. Phases run on their nodes in parallel, or, when declared
``serial``, one node at a time (rolling restarts). Every log line starts with
the node; a phase that fails ends the run with one error naming each failed node.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, Sequence

from vmkube.nodes.ssh import Session
from vmkube.parallel import fan_out, one_by_one

log = logging.getLogger("vmkube.phases")
PARALLEL, SERIAL = "parallel", "serial"


@dataclass
class Node:
    name: str
    role: str  # roles.CONTROL_PLANE or roles.WORKER
    address: str
    session: Session


@dataclass(frozen=True)
class Command:
    """One command a phase decided a node needs: it changes the node, so runs count it."""
    argv: str | tuple[str, ...]
    why: str = ""  # logged before it runs: "starting kubelet"
    sudo: bool = True
    timeout: float = 600.0


@dataclass(frozen=True)
class Upload:
    """Files a phase decided a node needs (FileSpec items), sent in one batch."""
    files: tuple[Any, ...] = field(repr=False)
    why: str = ""


Step = Command | Upload


class Phase(Protocol):
    title: str
    mode: str  # PARALLEL or SERIAL

    def applies(self, node: Node) -> bool: ...
    def run(self, node: Node) -> None: ...


def execute(node: Node, steps: Sequence[Step]) -> None:
    """Runs the steps a phase decided, in order, stopping at the first that fails."""
    for step in steps:
        if step.why:
            log.info("%s: %s", node.name, step.why)
        if isinstance(step, Upload):
            node.session.put_many([(f.content, f.path, f.mode) for f in step.files], sudo=True)
        else:
            node.session.run(step.argv if isinstance(step.argv, str) else list(step.argv), sudo=step.sudo,
                             timeout=step.timeout, change=True)


def run_phases(nodes: Iterable[Node], phases: Iterable[Phase]) -> list[tuple[str, float]]:
    """Runs each phase over the nodes it applies to; returns how long each took (s)."""
    nodes = list(nodes)
    timings: list[tuple[str, float]] = []
    for phase in phases:
        targets = {n.name: n for n in nodes if phase.applies(n)}
        if not targets:
            log.info("%s: no node needs it, skipped", phase.title)
            continue
        serial = getattr(phase, "mode", PARALLEL) == SERIAL
        log.info("%s on %d node%s%s", phase.title, len(targets), "s" if len(targets) != 1 else "",
                 ", one at a time" if serial and len(targets) > 1 else "")
        start = time.monotonic()
        (one_by_one if serial else fan_out)(list(targets), lambda name: phase.run(targets[name]), phase.title)
        timings.append((phase.title, time.monotonic() - start))
    return timings


def timing_summary(timings: list[tuple[str, float]]) -> str:
    """Where the time went, one line per phase: what `pulumi up` shows at the end of a bootstrap."""
    total = sum(s for _t, s in timings)
    width = max((len(t) for t, _s in timings), default=0)
    return "\n".join([f"bootstrap took {total:.0f}s:", *(f"  {t:<{width}}  {s:6.1f}s" for t, s in timings)])
