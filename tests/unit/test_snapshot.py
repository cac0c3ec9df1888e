"""Snapshots and restore as data: names, retention, the commands a control plane runs.
(Taking, checking and restoring real snapshots: tests/integration/test_snapshot.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from vmkube.bootstrap import render, restore, snapshot


def touch(dest: Path, *names: str) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        (dest / name).write_bytes(b"x" * 10)


def test_retention_keeps_the_newest_and_leaves_other_files_alone(tmp_path: Path):
    touch(tmp_path, "20261201T100000Z-on-demand.db", "20261202T100000Z-before-upgrade.db",
          "20261202T100000Z-1-before-upgrade.db", "20261203T090000Z-before-restore.db",
          ".20261204T000000Z-on-demand.db.part", "notes.txt", "backup.db")
    removed = snapshot.prune(tmp_path, 2)
    assert sorted(p.name for p in removed) == ["20261201T100000Z-on-demand.db", "20261202T100000Z-before-upgrade.db"]
    assert [s.path.name for s in snapshot.listing(tmp_path)] == ["20261202T100000Z-1-before-upgrade.db",
                                                                  "20261203T090000Z-before-restore.db"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".20261204T000000Z-on-demand.db.part", "20261202T100000Z-1-before-upgrade.db",
        "20261203T090000Z-before-restore.db", "backup.db", "notes.txt"]
    assert snapshot.prune(tmp_path, 2) == []


def test_a_missing_directory_lists_nothing(tmp_path: Path):
    assert snapshot.listing(tmp_path / "none") == []
    with pytest.raises(snapshot.SnapshotError, match="there are: none"):
        snapshot.find(tmp_path / "none", "20261201T100000Z-on-demand.db")


@pytest.mark.parametrize("why,name", [("on demand", "on-demand"), ("Before upgrade to 1.34.4", "before-upgrade-to-1-34-4"),
                                      ("", "snapshot"), ("../../etc", "etc")])
def test_the_reason_becomes_a_safe_part_of_the_name(why, name):
    assert snapshot.slug(why) == name


def test_the_data_directory_follows_vmkube_data_then_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("VMKUBE_DATA", str(tmp_path / "d"))
    assert snapshot.directory(snapshot.data_dir(), "prod", "edge") == tmp_path / "d" / "snapshots" / "prod" / "edge"
    monkeypatch.delenv("VMKUBE_DATA")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "x"))
    assert snapshot.data_dir() == tmp_path / "x" / "vmkube"


def test_the_snapshot_is_saved_with_the_api_servers_etcd_client_certificate():
    cmd = snapshot.save_command("/var/tmp/d/snapshot.db")
    assert cmd[0] == f"{render.BIN_DIR}/etcdctl"
    assert "--endpoints=https://127.0.0.1:2379" in cmd
    assert f"--cert={render.PKI_DIR}/apiserver-etcd-client.crt" in cmd
    assert cmd[-3:] == ["snapshot", "save", "/var/tmp/d/snapshot.db"]


def test_each_member_restores_under_its_own_name_into_one_cluster():
    members = [restore.Member("c-cp-1", "10.0.0.11"), restore.Member("c-cp-2", "10.0.0.12"),
               restore.Member("c-cp-3", "10.0.0.13")]
    script = restore.restore_script(members[1], members, "20261202T100000Z")
    steps = script.split(" && ")
    [etcdutl] = [s for s in steps if "snapshot restore" in s]
    assert "--name=c-cp-2" in etcdutl
    assert "--initial-advertise-peer-urls=https://10.0.0.12:2380" in etcdutl
    assert ("--initial-cluster=c-cp-1=https://10.0.0.11:2380,c-cp-2=https://10.0.0.12:2380,"
            "c-cp-3=https://10.0.0.13:2380") in etcdutl
    # The same token and peer URLs as the etcd unit (render.etcd_args), so the members find each other.
    plan_args = " ".join(render.etcd_args(_plan(members), _plan(members).control_planes[1]))
    assert "--initial-cluster-token=vmkube" in etcdutl and "--initial-cluster-token=vmkube" in plan_args
    assert etcdutl.split("--initial-cluster=")[1].split()[0] in plan_args
    # Restored beside, old data kept aside, then swapped in: never an rm of /var/lib/etcd.
    assert steps.index(next(s for s in steps if "mv /var/lib/etcd /var/lib/etcd.before-restore-20261202T100000Z" in s)) \
        < steps.index("mv /var/lib/etcd.restored-20261202T100000Z /var/lib/etcd")
    assert not any(s.strip() in ("rm -rf /var/lib/etcd", "rm -rf /var/lib/etcd/") for s in steps)
    assert steps[-1] == f"rm -rf {restore.STAGE}"


def _plan(members):
    from vmkube.bootstrap.plan import Plan, PlanNode
    return Plan("c", "", "10.244.0.0/16", "10.96.0.0/12",
                tuple(PlanNode(m.name, "control-plane", m.ip, f"10.244.{i}.0/24") for i, m in enumerate(members)))


def test_a_snapshot_is_taken_before_a_control_plane_restart_of_a_running_cluster_only():
    from vmkube.contracts import SnapshotPolicy
    from vmkube.nodes.phases import Node
    from vmkube.bootstrap.snapshot import SnapshotBeforeRestart
    first, other = Node("c-cp-1", "control-plane", "10.0.0.11", None), Node("c-w-1", "worker", "10.0.0.21", None)
    on = SnapshotPolicy(dir="/snaps", keep=3, etcdutl="/tc/etcdutl")
    binary = {"c-cp-1": [f"{render.BIN_DIR}/kube-apiserver"]}
    kubelet_only = {"c-w-1": ["/etc/kubernetes/kubelet.conf"]}
    cases = [  # policy, changed, existed -> applies on the first control plane
        (on, binary, True, True),
        (on, binary, False, False),           # a new cluster: nothing to save
        (on, kubelet_only, True, False),      # no control-plane unit restarts
        (on, {}, True, False),                # a converged run
        (SnapshotPolicy(), binary, True, False),  # no etcdutl: no policy
    ]
    for policy, changed, existed, expected in cases:
        phase = SnapshotBeforeRestart(policy, changed, first=first, existed=existed)
        assert phase.applies(first) is expected, (changed, existed)
        assert phase.applies(other) is False
    assert SnapshotBeforeRestart(on, binary, first=first, existed=True).restarting() == ["c-cp-1"]


def test_snapshot_settings_alone_run_no_bootstrap():
    from dataclasses import fields, replace
    from vmkube.contracts import BootstrapInputs, SnapshotPolicy
    from vmkube.stack.bootstrap import needs_run
    from tests.unit.test_contracts import INPUTS as old, through_engine
    new = replace(old, snapshots=SnapshotPolicy(dir="/elsewhere", keep=30, etcdutl="/tc/etcdutl"))
    assert BootstrapInputs.from_props(through_engine(new.to_props())) == new
    ready = [{"name": n.name, "ready": True} for n in old.nodes]
    assert not needs_run({**old.to_props(), "nodeStatus": ready}, new.to_props())
    # Every other field is the cluster's: a new one must be named there, or it would never run.
    # The renewal policy runs the bootstrap through the certificates it finds due (test_cert_renewal.py).
    assert set(BootstrapInputs.CLUSTER_FIELDS) == {f.name for f in fields(BootstrapInputs)} - {"snapshots",
                                                                                               "pki_policy"}
