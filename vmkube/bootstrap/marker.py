"""Phase: a mark on each node that vmkube bootstrapped it (preflight then accepts the
ports vmkube's own services hold)."""

from __future__ import annotations

from dataclasses import dataclass

from vmkube.nodes.phases import PARALLEL, Command, Node, execute

from vmkube.bootstrap.preflight import BOOTSTRAPPED_MARKER

MARK = Command(("sh", "-c", f"mkdir -p /var/lib/vmkube && touch {BOOTSTRAPPED_MARKER}"))


def decide_mark(marked: bool) -> list[Command]:
    return [] if marked else [MARK]


@dataclass
class Mark:
    title: str = "mark nodes bootstrapped"
    mode: str = PARALLEL

    def applies(self, node: Node) -> bool:
        return True

    def facts(self, node: Node) -> bool:
        return node.session.run(["test", "-e", BOOTSTRAPPED_MARKER], check=False).ok

    def run(self, node: Node) -> None:
        execute(node, decide_mark(self.facts(node)))
