"""etcd snapshots (vmkube/bootstrap/snapshot.py) of a real etcd, taken through real
OpenSSH and checked by the real etcdutl.

The node is a host of the SSH lab running vmkube's own etcd (tests/fixtures/etcdnode.py). The snapshot lands in a data directory of the test,
0600 inside 0700; the node keeps no copy; retention keeps the newest N; a file that is
not a snapshot is refused by name."""

from __future__ import annotations

import glob
import os
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest

from vmkube.bootstrap import restore, snapshot
from tests.fixtures.etcdnode import EtcdNode, etcd_on
from tests.fixtures.toolchain import tool_dir
from tests.kubelocal import ONE

NODE = ONE.control_planes[0]


@pytest.fixture
def etcd_node(ssh_lab, tmp_path: Path) -> Iterator[EtcdNode]:
    with etcd_on(ssh_lab, "direct", tmp_path) as node:
        yield node


def test_a_snapshot_is_taken_checked_kept_private_and_pruned(etcd_node, tmp_path: Path):
    session, at, etcd, etcdctl = etcd_node.session, etcd_node.at, etcd_node.etcd, etcd_node.etcdctl
    before = set(glob.glob("/var/tmp/vmkube-snapshot.*"))
    dest = snapshot.directory(tmp_path / "data", "lab", "vmkube-local")
    session.run([*etcdctl, "put", "/registry/configmaps/default/probe", "one"])

    first = snapshot.take(session, dest, why="on demand", etcdutl=etcd / "etcdutl", keep=2, at=at,
                          etcdctl=etcd_node.etcdctl[0], now=datetime(2026, 12, 2, 10, 0, tzinfo=timezone.utc))
    assert first.path == dest / "20261202T100000Z-on-demand.db"
    assert first.keys >= 1 and first.revision >= 2 and first.size == first.path.stat().st_size > 0
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    assert set(glob.glob("/var/tmp/vmkube-snapshot.*")) == before, "the node kept its copy"
    assert not [p for p in os.listdir(dest) if p.endswith(".part")]

    session.run([*etcdctl, "put", "/registry/configmaps/default/probe-2", "two"])
    for hour in (11, 12):
        snap = snapshot.take(session, dest, why="before upgrade", etcdutl=etcd / "etcdutl", keep=2, at=at,
                             etcdctl=etcd_node.etcdctl[0],
                             now=datetime(2026, 12, 2, hour, 0, tzinfo=timezone.utc))
    assert snap.revision > first.revision and snap.keys > first.keys
    kept = snapshot.listing(dest)
    assert [s.path.name for s in kept] == ["20261202T110000Z-before-upgrade.db", "20261202T120000Z-before-upgrade.db"]
    assert [s.why for s in kept] == ["before-upgrade", "before-upgrade"]
    assert snapshot.find(dest, "20261202T120000Z-before-upgrade.db") == kept[1]
    with pytest.raises(snapshot.SnapshotError, match="20261202T100000Z-on-demand.db.*there are: 20261202T11"):
        snapshot.find(dest, "20261202T100000Z-on-demand.db")


def test_two_snapshots_in_one_second_keep_their_order(etcd_node, tmp_path: Path):
    session, at, etcd = etcd_node.session, etcd_node.at, etcd_node.etcd
    dest = tmp_path / "snaps"
    now = datetime(2026, 12, 2, 10, 0, tzinfo=timezone.utc)
    names = [snapshot.take(session, dest, why=why, etcdutl=etcd / "etcdutl", keep=5, at=at,
                           etcdctl=etcd_node.etcdctl[0], now=now).path.name for why in ("a", "b", "c")]
    assert names == ["20261202T100000Z-a.db", "20261202T100000Z-1-b.db", "20261202T100000Z-2-c.db"]
    assert [s.path.name for s in snapshot.listing(dest)] == names


def test_a_file_that_is_not_a_snapshot_is_refused_by_name(tmp_path: Path):
    bad = tmp_path / "20261202T100000Z-broken.db"
    bad.write_bytes(b"not bolt" * 100)
    with pytest.raises(snapshot.SnapshotError, match="20261202T100000Z-broken.db: not a valid etcd snapshot"):
        snapshot.status(tool_dir("etcd") / "etcdutl", bad)


def test_a_restore_brings_the_keyspace_back_and_keeps_the_old_data_aside(etcd_node, tmp_path: Path):
    """The restore's own script (restore.restore_script) with the real etcdutl; the stop and
    start around it are the fixture's (on a node they are systemctl's, shown end to end)."""
    node = etcd_node
    node.session.run([*node.etcdctl, "put", "/registry/configmaps/default/kept", "before"])
    snap = snapshot.take(node.session, tmp_path / "snaps", why="before change", etcdutl=node.etcd / "etcdutl",
                         keep=3, at=node.at, etcdctl=node.etcdctl[0])
    node.session.run([*node.etcdctl, "put", "/registry/configmaps/default/kept", "after"])
    node.session.run([*node.etcdctl, "put", "/registry/configmaps/default/new", "x"])
    node.stop()

    stage = tmp_path / "stage"
    node.session.put_many([((node.etcd / "etcdutl").read_bytes(), f"{stage}/etcdutl", 0o700),
                           (snap.path.read_bytes(), f"{stage}/snapshot.db", 0o600)], sudo=True)
    script = restore.restore_script(restore.Member(NODE.name, NODE.ip), [restore.Member(NODE.name, NODE.ip)],
                                    "20261202T100000Z", node.at, stage=str(stage))
    node.session.run(script, sudo=True)
    node.start()

    assert node.get("/registry/configmaps/default/kept") == "before"
    assert node.get("/registry/configmaps/default/new") == ""
    aside = Path(f"{node.at.etcd_data}.before-restore-20261202T100000Z")
    assert (aside / "member").is_dir(), "the data before the restore is kept aside"
    assert stat.S_IMODE(Path(node.at.etcd_data).stat().st_mode) == 0o700
    assert not stage.exists(), "the staging directory goes with the restore"
