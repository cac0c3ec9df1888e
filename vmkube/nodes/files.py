"""Files on nodes, converged: read every digest and mode in one command (the fact),
decide which files differ (pure), upload only those. A second run over a converged
node changes nothing."""

from __future__ import annotations

import functools
import hashlib
import shlex
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from vmkube.nodes.phases import PARALLEL, Node, Step, Upload, execute
from vmkube.nodes.ssh import Session

State = Mapping[str, "tuple[str, int] | None"]  # path -> (sha256, mode), None where missing


@dataclass(frozen=True)
class FileSpec:
    path: str
    content: bytes = field(repr=False)
    mode: int = 0o644

    @functools.cached_property
    def digest(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


_STATE_SCRIPT = ('for f in "$@"; do if [ -f "$f" ]; then printf "%s %s %s\\n" '
                 '"$(sha256sum "$f" | cut -d" " -f1)" "$(stat -c %a "$f")" "$f"; else printf -- "- - %s\\n" "$f"; fi; '
                 'done')


def parse_state(out: str) -> dict[str, tuple[str, int] | None]:
    state: dict[str, tuple[str, int] | None] = {}
    for line in out.splitlines():
        digest, mode, path = line.split(" ", 2)
        state[path] = None if digest == "-" else (digest, int(mode, 8))
    return state


def remote_state(session: Session, paths: Iterable[str]) -> dict[str, tuple[str, int] | None]:
    """sha256 and mode of each path on the node (None where missing), in one command."""
    paths = list(paths)
    if not paths:
        return {}
    out = session.run(f"sh -c {shlex.quote(_STATE_SCRIPT)} sh {shlex.join(paths)}", sudo=True,
                      label=f"reading the digests of {len(paths)} file(s)").stdout
    return parse_state(out)


def changed_files(files: Iterable[FileSpec], state: State) -> list[FileSpec]:
    """The files whose content or mode differ from what the node has."""
    return [f for f in files if state.get(f.path) != (f.digest, f.mode)]


def ensure_files(session: Session, files: Iterable[FileSpec]) -> list[str]:
    """Uploads the files whose content or mode differ; returns their paths."""
    files = list(files)
    changed = changed_files(files, remote_state(session, [f.path for f in files]))
    session.put_many([(f.content, f.path, f.mode) for f in changed], sudo=True)
    return [f.path for f in changed]


@dataclass
class Files:
    """A phase that lays down each node's files; ``on_change`` adds the steps that
    changed paths need (a reload, say). ``changed`` records, per node, what changed."""
    title: str
    files_for: Callable[[Node], list[FileSpec]]
    on_change: Callable[[Node, list[str]], list[Step]] | None = None
    changed: dict[str, list[str]] = field(default_factory=dict)
    mode: str = PARALLEL

    def applies(self, node: Node) -> bool:
        return bool(self.files_for(node))

    def facts(self, node: Node) -> dict[str, tuple[str, int] | None]:
        return remote_state(node.session, [f.path for f in self.files_for(node)])

    def decide(self, node: Node, state: State) -> list[Step]:
        changed = changed_files(self.files_for(node), state)
        if not changed:
            return []
        paths = [f.path for f in changed]
        extra = self.on_change(node, paths) if self.on_change is not None else []
        return [Upload(tuple(changed), why=f"{len(changed)} file(s) changed"), *extra]

    def run(self, node: Node) -> None:
        steps = self.decide(node, self.facts(node))
        self.changed[node.name] = [f.path for s in steps if isinstance(s, Upload) for f in s.files]
        execute(node, steps)
