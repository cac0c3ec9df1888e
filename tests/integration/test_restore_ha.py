"""Restore with three control planes: one snapshot put back on every member with
vmkube's own restore script, the members re-formed as one etcd cluster, and the API
servers back on the restored keyspace with the cluster's identity unchanged.

Real etcd, API servers, controller managers and schedulers with vmkube's flags and
PKI, on loopback addresses (tests/kubelocal.py): three control-plane VMs do not fit
on this machine (tests/integration/test_control_plane_ha.py says why). What the fixture
does instead of systemctl is stopping and starting the processes; on a node the same
restore runs between `systemctl stop` and `systemctl start` (vmkube/bootstrap/restore.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from tests.fixtures.kube import ControlPlane, wait_node_ready
from tests.fixtures.toolchain import tool_dir
from tests.integration.test_control_plane_ha import etcd_members
from tests.kubelocal import layout
from vmkube.bootstrap import render, restore

STAMP = "20261202T120000Z"
RESTART_SECONDS = 180.0


def identity(cp: ControlPlane) -> dict[str, str]:
    ns = json.loads(cp.kubectl("get", "namespace", "kube-system", "-o", "json"))["metadata"]["uid"]
    nodes = json.loads(cp.kubectl("get", "nodes", "-o", "json"))["items"]
    return {"kube-system": ns, **{n["metadata"]["name"]: n["metadata"]["uid"] for n in nodes}}


def test_three_members_restored_from_one_snapshot_form_one_cluster_again(ha: ControlPlane, tmp_path: Path):
    cp, etcd = ha, tool_dir("etcd")
    nodes = cp.plan.control_planes
    at = {n.name: layout(cp.workdir, n, cp.ports) for n in nodes}
    before = identity(cp)
    cp.kubectl("create", "configmap", "made-before", "-n", "default", "--from-literal=a=1")

    # The snapshot, taken from the first member as vmkube's etcdctl line does (its own address).
    snap = tmp_path / "snapshot.db"
    args = [a if not a.startswith("--endpoints=") else f"--endpoints=https://{nodes[0].ip}:{cp.ports.etcd}"
            for a in render.etcdctl_args(at[nodes[0].name], str(etcd / "etcdctl"))]
    subprocess.run([*args, "snapshot", "save", str(snap)], check=True, capture_output=True, timeout=60)
    cp.kubectl("create", "configmap", "made-after", "-n", "default", "--from-literal=a=2")

    for node in nodes:  # every control plane down before any is restored
        cp.kill(node)
    members = [restore.Member(n.name, n.ip) for n in nodes]
    started = time.monotonic()
    for node in nodes:
        stage = tmp_path / f"stage-{node.name}"
        stage.mkdir()
        shutil.copy(etcd / "etcdutl", stage / "etcdutl")
        shutil.copy(snap, stage / "snapshot.db")
        script = restore.restore_script(next(m for m in members if m.name == node.name), members, STAMP,
                                        at[node.name], stage=str(stage))
        subprocess.run(["sh", "-c", script], check=True, capture_output=True, timeout=120)
        assert not stage.exists()
        assert (Path(f"{at[node.name].etcd_data}.before-restore-{STAMP}") / "member").is_dir()
    for node in nodes:
        cp.start(node)
    deadline = time.monotonic() + RESTART_SECONDS
    for node in nodes:
        wait_node_ready(cp, node, deadline)
    took = time.monotonic() - started

    for node in nodes:  # one cluster of three, seen from each member
        assert etcd_members(cp, node.ip) == sorted(n.name for n in nodes)
    names = {c["metadata"]["name"] for c in json.loads(cp.kubectl("get", "configmaps", "-n", "default",
                                                                    "-o", "json"))["items"]}
    assert "made-before" in names and "made-after" not in names
    assert identity(cp) == before
    print(f"three members restored and serving in {took:.1f}s")
