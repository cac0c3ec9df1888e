"""Files on nodes, converged: read every digest and mode in one command, then
upload only what differs. A second run over a converged node changes nothing."""

from __future__ import annotations

import functools
import hashlib
import shlex
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .phases import Node
from .ssh import Session


@dataclass(frozen=True)
class FileSpec:
    path: str
    content: bytes = field(repr=False)
    mode: int = 0o644

    @functools.cached_property
    def digest(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def remote_state(session: Session, paths: Iterable[str]) -> dict[str, tuple[str, int] | None]:
    """sha256 and mode of each path on the node (None where missing), in one command."""
    paths = list(paths)
    if not paths:
        return {}
    script = ('for f in "$@"; do if [ -f "$f" ]; then printf "%s %s %s\\n" '
              '"$(sha256sum "$f" | cut -d" " -f1)" "$(stat -c %a "$f")" "$f"; else printf -- "- - %s\\n" "$f"; fi; done')
    out = session.run(f"sh -c {shlex.quote(script)} sh {shlex.join(paths)}", sudo=True).stdout
    state: dict[str, tuple[str, int] | None] = {}
    for line in out.splitlines():
        digest, mode, path = line.split(" ", 2)
        state[path] = None if digest == "-" else (digest, int(mode, 8))
    return state


def ensure_files(session: Session, files: Iterable[FileSpec]) -> list[str]:
    """Uploads the files whose content or mode differ; returns their paths."""
    files = list(files)
    state = remote_state(session, [f.path for f in files])
    changed = [f for f in files if state.get(f.path) != (f.digest, f.mode)]
    session.put_many([(f.content, f.path, f.mode) for f in changed], sudo=True)
    return [f.path for f in changed]


@dataclass
class Files:
    """A phase that lays down each node's files; ``on_change`` runs when any changed."""
    title: str
    files_for: Callable[[Node], list[FileSpec]]
    on_change: Callable[[Node, list[str]], None] | None = None

    def applies(self, node: Node) -> bool:
        return bool(self.files_for(node))

    def run(self, node: Node) -> None:
        changed = ensure_files(node.session, self.files_for(node))
        if changed and self.on_change is not None:
            self.on_change(node, changed)
