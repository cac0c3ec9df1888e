"""Restore: every control plane's etcd put back to one snapshot and re-formed as one
cluster, then the API back.

All control planes are stopped first (an API server left running would write into
the restored keyspace from its caches). Each gets the snapshot and the operator's
etcdutl (each upload's sha256 checked on the node) and restores it into a new data
directory with its own member name and peer URL; the old data directory is kept
beside it (``/var/lib/etcd.before-restore-<stamp>``), so a restore is itself undoable. Then etcd starts on every control plane at once (the
members wait for each other), then the API server, controller manager and scheduler,
and the run waits for etcd health and ``/readyz`` on each.

The cluster's identity survives: the snapshot holds the namespaces' and nodes' UIDs,
and the PKI on the nodes is the one the snapshot was taken under.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass
from pathlib import Path

from vmkube.nodes.phases import Node

from vmkube.bootstrap import render
from vmkube.bootstrap.readiness import serving

log = logging.getLogger("vmkube")

STOP_ORDER = ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")
START_AFTER_ETCD = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
STAGE = "/var/lib/vmkube-restore"  # root's: the snapshot and etcdutl while the restore runs


@dataclass(frozen=True)
class Member:
    name: str
    ip: str


def initial_cluster(members: list[Member], at: render.Layout = render.NODE_LAYOUT) -> str:
    """The --initial-cluster of the restored members, as render.etcd_args writes it."""
    return ",".join(f"{m.name}=https://{m.ip}:{at.etcd_peer_port}" for m in members)


def restore_script(member: Member, members: list[Member], stamp: str,
                   at: render.Layout = render.NODE_LAYOUT, stage: str = STAGE) -> str:
    """The shell run (as root) on one stopped control plane, the snapshot and etcdutl in
    ``stage`` (put_many checked their sha256): restore into a new data directory, keep
    the old one aside, put the new one in its place."""
    data, snap = at.etcd_data, f"{stage}/snapshot.db"
    new, old = f"{data}.restored-{stamp}", f"{data}.before-restore-{stamp}"
    restore = [f"{stage}/etcdutl", "snapshot", "restore", snap, f"--name={member.name}",
               f"--initial-cluster={initial_cluster(members, at)}", "--initial-cluster-token=vmkube",
               f"--initial-advertise-peer-urls=https://{member.ip}:{at.etcd_peer_port}", f"--data-dir={new}"]
    q = shlex.quote
    return " && ".join([
        f"rm -rf {q(new)}",
        shlex.join(restore),
        f"chmod 700 {q(new)}",
        f"{{ [ ! -e {q(data)} ] || mv {q(data)} {q(old)}; }}",
        f"mv {q(new)} {q(data)}",
        f"rm -rf {q(stage)}",
    ])


def restore(control_planes: list[Node], snapshot: Path, etcdutl: Path, stamp: str) -> None:
    """Puts every control plane's etcd back to ``snapshot`` and brings the API back."""
    members = [Member(n.name, n.address) for n in control_planes]
    data = snapshot.read_bytes()
    tool = etcdutl.read_bytes()
    for node in control_planes:
        log.info("%s: stopping the control plane for the restore", node.name)
        node.session.run(["systemctl", "stop", *STOP_ORDER], sudo=True, change=True, timeout=300)
    for node in control_planes:
        member = next(m for m in members if m.name == node.name)
        node.session.put_many([(tool, f"{STAGE}/etcdutl", 0o700), (data, f"{STAGE}/snapshot.db", 0o600)],
                              sudo=True)
        node.session.run(restore_script(member, members, stamp), sudo=True, change=True, timeout=600,
                         label=f"restoring etcd from {snapshot.name}")
    for node in control_planes:
        log.info("%s: starting etcd on the restored data", node.name)
        node.session.run("systemctl start --no-block etcd", sudo=True, change=True)
    for node in control_planes:
        node.session.run(["systemctl", "start", *START_AFTER_ETCD], sudo=True, change=True, timeout=300)
    for node in control_planes:
        serving(node)
        log.info("%s: etcd healthy and the API server ready after the restore", node.name)
