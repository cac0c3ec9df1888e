"""`make snapshot STACK=…`, `make snapshots STACK=…`, `make restore STACK=… SNAPSHOT=…`: take
an etcd snapshot of a stack's cluster now, list the ones kept, or put the cluster back to one.

Snapshots are kept on this machine under vmkube's data directory
(``$VMKUBE_DATA/snapshots/<stack>/<cluster>/``, 0700, each file 0600: they hold every Secret of the
cluster), checked with the toolchain's etcdutl, the newest ``vmkube:etcd.snapshots.keep``
(default 10) of them.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.stackaccess import config_value, stack_sessions  # noqa: E402
from vmkube.bootstrap import restore, snapshot  # noqa: E402
from vmkube import config  # noqa: E402
from vmkube.config import EtcdSpec  # noqa: E402
from vmkube.errors import VmkubeError  # noqa: E402
from vmkube.nodes.phases import Node  # noqa: E402
from vmkube.roles import CONTROL_PLANE  # noqa: E402


def etcdutl() -> Path:
    out = subprocess.run([str(ROOT / "tools" / "build"), "--tool-dir", "etcd"], capture_output=True, text=True)
    path = Path(out.stdout.strip()) / "etcdutl"
    if not path.is_file():
        sys.exit("vmkube: error: the toolchain's etcdutl is not built; run `make toolchain`")
    return path


def where(stack: str) -> Path:
    """The stack's cluster's snapshot directory, as the program names it (vmkube:name)."""
    name = config_value(stack, "vmkube:name") or config.default_name(stack)
    return snapshot.directory(snapshot.data_dir(), stack, name)


def human(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.0f} KiB"


def take(stack: str, why: str) -> int:
    keep = int(config_value(stack, "vmkube:etcd.snapshots.keep", str(EtcdSpec.snapshots_keep)))
    sessions = stack_sessions(stack, CONTROL_PLANE)
    if not sessions:
        sys.exit(f"vmkube: error: stack {stack} has no control plane to take a snapshot from")
    with sessions[0] as session:
        snap = snapshot.take(session, where(stack), why=why,
                             etcdutl=etcdutl(), keep=keep)
    print(f"{snap.path} ({human(snap.size)}, revision {snap.revision}, {snap.keys} keys)")
    return 0


def put_back(stack: str, name: str) -> int:
    dest = where(stack)
    chosen = snapshot.find(dest, name)
    tool = etcdutl()
    status = snapshot.status(tool, chosen.path)  # refuses a damaged file before anything stops
    sessions = stack_sessions(stack, CONTROL_PLANE)
    if not sessions:
        sys.exit(f"vmkube: error: stack {stack} has no control plane to restore")
    nodes = [Node(s.node, CONTROL_PLANE, s.target.host, s) for s in sessions]
    keep = int(config_value(stack, "vmkube:etcd.snapshots.keep", str(EtcdSpec.snapshots_keep)))
    try:
        # The state being replaced, in case this restore is the mistake.
        nodes[0].session.connect()
        snapshot.take(nodes[0].session, dest, why="before restore", etcdutl=tool, keep=max(keep, 2))
    except VmkubeError as exc:
        print(f"vmkube: warning: no snapshot of the current state ({exc}); restoring anyway", file=sys.stderr)
    print(f"restoring {', '.join(n.name for n in nodes)} to {chosen.path.name} (revision {status.get('revision')})")
    stamp = datetime.now(timezone.utc).strftime(snapshot.STAMP)
    try:
        restore.restore(nodes, chosen.path, tool, stamp)
    finally:
        for s in sessions:
            s.close()
    print(f"restored; the data it replaced is kept on each control plane as /var/lib/etcd.before-restore-{stamp}")
    return 0


def show(stack: str) -> int:
    dest = where(stack)
    snaps = snapshot.listing(dest)
    if not snaps:
        print(f"no snapshots of stack {stack} in {dest}")
        return 0
    print(f"{len(snaps)} snapshot(s) of stack {stack} in {dest}, oldest first:")
    for s in snaps:
        print(f"  {s.path.name}  {human(s.size):>10}  {s.why}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tools/snapshot.py", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("take", "list", "restore"))
    parser.add_argument("--stack", default="local")
    parser.add_argument("--snapshot", default="", help="restore: the file name `make snapshots` lists")
    parser.add_argument("--why", default="on demand", help="a word or two kept in the snapshot's name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.action == "restore":
            if not args.snapshot:
                parser.error("restore needs --snapshot (SNAPSHOT=… with make); `make snapshots` lists them")
            return put_back(args.stack, args.snapshot)
        return take(args.stack, args.why) if args.action == "take" else show(args.stack)
    except VmkubeError as exc:
        print(f"vmkube: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
