"""etcd snapshots, kept on the operator's machine.

A snapshot is written on a control plane by etcdctl into a directory only root may
enter, copied over SFTP into vmkube's data directory as a hidden part file (0600 from
its first byte: it holds every Secret of the cluster), checked there with
``etcdutl snapshot status``, and only then given its name. A copy that fails the check
is deleted, never kept under a snapshot's name; the node's copy goes in every case.
Retention keeps the newest ``keep`` of a stack.

Names sort by time: ``20261202T140501Z-before-upgrade.db``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

from vmkube.contracts import SnapshotPolicy
from vmkube.errors import VmkubeError
from vmkube.nodes.phases import PARALLEL, Node
from vmkube.nodes.ssh import Session

from vmkube.bootstrap import render
from vmkube.bootstrap.services import touched

log = logging.getLogger("vmkube")

SUFFIX = ".db"
STAMP = "%Y%m%dT%H%M%SZ"
_NAME = re.compile(r"^(\d{8}T\d{6}Z)(?:-(\d+))?-([a-z0-9-]+)\.db$")
SAVE_TIMEOUT = 600.0  # a large keyspace on a busy emulated node is slow to stream


class SnapshotError(VmkubeError):
    """Taking, checking or listing a snapshot failed; the message names the node or file."""


@dataclass(frozen=True)
class Snapshot:
    path: Path
    taken: str  # UTC, as in the name
    why: str
    size: int
    revision: int = 0  # from etcdutl; 0 when only listed
    keys: int = 0


def data_dir() -> Path:
    """vmkube's data directory on this machine, as tools/lib.sh names it."""
    if os.environ.get("VMKUBE_DATA"):
        return Path(os.environ["VMKUBE_DATA"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "vmkube"


def directory(data_dir: Path, stack: str, cluster: str) -> Path:
    """Where the snapshots of one stack's cluster are kept."""
    return data_dir / "snapshots" / stack / cluster


def slug(why: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", why.lower()).strip("-") or "snapshot"


ETCDCTL = f"{render.BIN_DIR}/etcdctl"


def save_command(path: str, at: render.Layout = render.NODE_LAYOUT, etcdctl: str = ETCDCTL) -> list[str]:
    return [*render.etcdctl_args(at, etcdctl), "--command-timeout=300s", "snapshot", "save", path]


def status(etcdutl: Path, path: Path) -> dict:
    """What etcdutl reads from a snapshot file: hash, revision, totalKey, totalSize."""
    proc = subprocess.run([str(etcdutl), "snapshot", "status", "-w", "json", str(path)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip().splitlines()
        raise SnapshotError(f"{path.name}: not a valid etcd snapshot: {said[-1] if said else 'etcdutl failed'}")
    return json.loads(proc.stdout)


def _free_name(dest: Path, stamp: str, why: str) -> Path:
    """The next name of this second: a counter after the time keeps the order of two
    snapshots taken within one second, whatever their reasons."""
    counters = [int(m.group(2) or 0) for m in (_NAME.match(p.name) for p in dest.iterdir())
                if m and m.group(1) == stamp]
    if not counters:
        return dest / f"{stamp}-{slug(why)}{SUFFIX}"
    return dest / f"{stamp}-{max(counters) + 1}-{slug(why)}{SUFFIX}"


def take(session: Session, dest: Path, *, why: str, etcdutl: Path, keep: int,
         at: render.Layout = render.NODE_LAYOUT, etcdctl: str = ETCDCTL, now: datetime | None = None) -> Snapshot:
    """A snapshot of the etcd the session's control plane serves, checked and kept in dest."""
    dest.mkdir(parents=True, exist_ok=True)
    dest.chmod(0o700)
    stamp = (now or datetime.now(timezone.utc)).strftime(STAMP)
    final = _free_name(dest, stamp, why)
    part = dest / f".{final.name}.part"
    part.unlink(missing_ok=True)  # left by a run killed mid-copy
    remote = session.run("umask 077 && mktemp -d /var/tmp/vmkube-snapshot.XXXXXX", sudo=True,
                         label="making a private directory for the snapshot").stdout.strip()
    try:
        session.run(save_command(f"{remote}/snapshot.db", at, etcdctl), sudo=True, timeout=SAVE_TIMEOUT,
                    label=f"saving an etcd snapshot ({why})")
        # Only the SSH user fetches it: the directory stays 0700, now the user's.
        session.run(["chown", "-R", session.target.user, remote], sudo=True, label="handing the snapshot to the SSH user")
        session.download(f"{remote}/snapshot.db", part)
    finally:
        session.run(f"rm -rf {shlex.quote(remote)}", sudo=True, check=False, label="removing the node's copy")
    try:
        info = status(etcdutl, part)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    part.rename(final)
    snap = Snapshot(final, stamp, why, final.stat().st_size, info.get("revision", 0), info.get("totalKey", 0))
    log.info("%s: etcd snapshot %s (%d bytes, revision %d, %d keys)", session.node, final, snap.size,
             snap.revision, snap.keys)
    for old in prune(dest, keep):
        log.info("%s: removed snapshot %s (keeping the newest %d)", session.node, old.name, keep)
    return snap


def listing(dest: Path) -> list[Snapshot]:
    """A stack's snapshots, oldest first (part files and strangers are not snapshots)."""
    if not dest.is_dir():
        return []
    found = []
    for path in dest.iterdir():
        m = _NAME.match(path.name)
        if m and path.is_file():
            found.append(((m.group(1), int(m.group(2) or 0)), Snapshot(path, m.group(1), m.group(3), path.stat().st_size)))
    return [snap for _, snap in sorted(found, key=lambda f: f[0])]


def prune(dest: Path, keep: int) -> list[Path]:
    """Removes all but the newest ``keep`` snapshots; returns what it removed."""
    snaps = listing(dest)
    gone = [s.path for s in snaps[:max(0, len(snaps) - keep)]]
    for path in gone:
        path.unlink()
    return gone


def find(dest: Path, name: str) -> Snapshot:
    """A snapshot by its file name (or path), or an error listing the ones there are."""
    wanted = Path(name).name
    for snap in listing(dest):
        if snap.path.name == wanted:
            return snap
    there = ", ".join(s.path.name for s in listing(dest)) or "none"
    raise SnapshotError(f"no snapshot {wanted!r} in {dest} (there are: {there})")



def take_by_policy(session: Session, policy: SnapshotPolicy, why: str) -> Snapshot | None:
    """A snapshot before a disruptive step, where the policy says (None: no policy). An
    etcd that does not answer cannot be saved: the step goes ahead (it may be the repair)
    with a warning; a snapshot that fails otherwise stops the run before the step."""
    if not policy.enabled:
        return None
    health = session.run([*render.etcdctl_args(), "--command-timeout=5s", "endpoint", "health"], sudo=True, check=False,
                         label="asking etcd whether it can be saved")
    if not health.ok:
        log.warning("%s: etcd is not healthy, so no snapshot before %s; going ahead", session.node, why)
        return None
    return take(session, Path(policy.dir), why=why, etcdutl=Path(policy.etcdutl), keep=policy.keep)


@dataclass
class SnapshotBeforeRestart:
    """On the first control plane of a cluster that was up before: an etcd snapshot when a
    control plane is about to restart on changed configuration (new binaries, flags,
    certificates)."""
    policy: SnapshotPolicy
    changed: Mapping[str, list[str]]  # node -> paths changed this run
    first: Node
    existed: bool
    title: str = "save etcd before the control plane restarts"
    mode: str = PARALLEL

    def restarting(self) -> list[str]:
        return sorted(name for name, paths in self.changed.items()
                      if any(touched(u, paths) for u in render.CONTROL_PLANE_UNITS))

    def applies(self, node: Node) -> bool:
        return node is self.first and self.existed and self.policy.enabled and bool(self.restarting())

    def run(self, node: Node) -> None:
        take_by_policy(node.session, self.policy, f"before restarting {', '.join(self.restarting())}")
