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


# Where a node remembers the digests it computed, by each file's size, inode and ctime (to
# the nanosecond): any write, rename or chmod changes the ctime, which no one can set back,
# so an unchanged key means unchanged content. A file changed in the last seconds is not
# remembered (two writes in one clock tick share a ctime). Without it every converge hashed ~450 MB of
# binaries on each control plane: 128 s of a no-op run under TCG.
MEMO = "/var/lib/vmkube/file-digests"

# Prints "digest mode path" per path ("- - path" when missing) and rewrites the memo with
# the files it saw (and the others' lines as they were). Lines of the memo: "@size.inode.ctime path<TAB>digest".
# A fixed handful of processes however many paths: one stat, one sha256sum for the files the
# memo does not know, two passes of one awk program. Under TCG a process costs tens of
# milliseconds, and the loop this replaces (a few per path) took 136 s over a control plane's
# 58 files with its API server busy.
_STATE_SCRIPT = r"""
memo=$1; shift; next="$memo.$$"
mkdir -p "$(dirname "$memo")" && (umask 077 && : > "$next")
printf '%s\n' "$@" > "$next.paths"
stat -L -c '%A %s.%i.%.9Z %Z %a %n' -- "$@" > "$next.stat" 2>/dev/null
program='
{ # a stat line: type and permissions, key, ctime in seconds, octal mode, path (spaces and all)
  rest = $0
  for (i = 1; i <= 4; i++) { cut = index(rest, " "); f[i] = substr(rest, 1, cut - 1); rest = substr(rest, cut + 1) }
  if (substr(f[1], 1, 1) != "-") next
  stat_key[rest] = "@" f[2] " " rest; stat_mode[rest] = f[4]; stat_changed[rest] = f[3]
}
END {
  while ((getline line < memo) > 0) {
    tab = index(line, "\t"); if (!tab) continue
    key = substr(line, 1, tab - 1); known[key] = substr(line, tab + 1)
    lines[++n] = line; line_path[n] = substr(key, index(key, " ") + 1)
  }
  while (pass == "report" && (getline line < sums) > 0) {
    cut = index(line, "  "); hashed[substr(line, cut + 2)] = substr(line, 1, cut - 1)
  }
  while ((getline path < paths) > 0) {
    seen[path] = 1
    if (!(path in stat_key)) { if (pass == "report") print "- - " path; continue }
    key = stat_key[path]; digest = (key in known) ? known[key] : hashed[path]
    if (pass == "unknown") { if (!(key in known)) print path; continue }
    # Changed in the last seconds: a write in the same clock tick would keep this ctime.
    if (now - stat_changed[path] >= 3) print key "\t" digest > out
    print digest " " stat_mode[path] " " path
  }
  # The other files lines are kept: a look at some paths does not forget the rest.
  if (pass == "report") for (i = 1; i <= n; i++) if (!(line_path[i] in seen)) print lines[i] > out
}'
awk -v pass=unknown -v memo="$memo" -v paths="$next.paths" "$program" "$next.stat" > "$next.unknown"
xargs -r -d '\n' sha256sum -- < "$next.unknown" > "$next.sums"
awk -v pass=report -v memo="$memo" -v paths="$next.paths" -v sums="$next.sums" -v now="$(date +%s)" \
  -v out="$next" "$program" "$next.stat"
rm -f "$next.paths" "$next.stat" "$next.unknown" "$next.sums"; mv "$next" "$memo"
"""


def parse_state(out: str) -> dict[str, tuple[str, int] | None]:
    state: dict[str, tuple[str, int] | None] = {}
    for line in out.splitlines():
        digest, mode, path = line.split(" ", 2)
        state[path] = None if digest == "-" else (digest, int(mode, 8))
    return state


def remote_state(session: Session, paths: Iterable[str], memo: str = MEMO) -> dict[str, tuple[str, int] | None]:
    """sha256 and mode of each path on the node (None where missing), in one command; a
    file unchanged since the last look is not hashed again (MEMO)."""
    paths = list(paths)
    if not paths:
        return {}
    out = session.run(f"sh -c {shlex.quote(_STATE_SCRIPT)} sh {shlex.join([memo, *paths])}", sudo=True,
                      label=f"reading the digests of {len(paths)} file(s)").stdout
    return parse_state(out)


def changed_files(files: Iterable[FileSpec], state: State) -> list[FileSpec]:
    """The files whose content or mode differ from what the node has."""
    return [f for f in files if state.get(f.path) != (f.digest, f.mode)]


def ensure_files(session: Session, files: Iterable[FileSpec], memo: str = MEMO) -> list[str]:
    """Uploads the files whose content or mode differ; returns their paths."""
    files = list(files)
    changed = changed_files(files, remote_state(session, [f.path for f in files], memo))
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
    memo: str = MEMO

    def applies(self, node: Node) -> bool:
        return bool(self.files_for(node))

    def facts(self, node: Node) -> dict[str, tuple[str, int] | None]:
        return remote_state(node.session, [f.path for f in self.files_for(node)], self.memo)

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
