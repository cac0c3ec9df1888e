"""The local control plane the engine tests and benchmarks deploy workloads to:
it serves the API, runs Deployments to their replicas on kwok's fake nodes, gives
each component the flags vmkube gives it, and leaves no process behind."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vmkube.bootstrap import render
from tests.fixtures import kube
from tests.fixtures.kube import ControlPlane, leftover_processes, start_control_plane
from tests.helpers import deployment_manifest
from tests.kubelocal import FAKE_NODES, ONE, PER_NODE, THREE, Ports, commands, layout

ROLLOUT_SECONDS = 60


def test_api_is_ready_with_the_fake_nodes(kube_cluster: ControlPlane):
    assert kube_cluster.kubectl("get", "--raw", "/readyz").strip() == "ok"
    nodes = json.loads(kube_cluster.kubectl("get", "nodes", "-o", "json"))["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == sorted(FAKE_NODES)
    assert "certificate-authority-data" in kube_cluster.kubeconfig
    assert kube_cluster.kubeconfig_path.read_text() == kube_cluster.kubeconfig


def test_a_deployment_reaches_its_replicas(kube_cluster: ControlPlane):
    kube_cluster.kubectl("create", "namespace", "fixture-rollout")
    start = time.monotonic()
    kube_cluster.kubectl("apply", "-n", "fixture-rollout", "-f", "-", input=deployment_manifest("hello", 2))
    kube_cluster.kubectl("rollout", "status", "-n", "fixture-rollout", "deployment/hello",
                         f"--timeout={ROLLOUT_SECONDS}s", timeout=ROLLOUT_SECONDS + 10)
    elapsed = time.monotonic() - start
    status = json.loads(kube_cluster.kubectl("get", "-n", "fixture-rollout", "deployment/hello", "-o", "json"))
    assert status["status"].get("readyReplicas") == 2, status["status"]
    pods = json.loads(kube_cluster.kubectl("get", "-n", "fixture-rollout", "pods", "-o", "json"))["items"]
    assert [p["status"]["phase"] for p in pods] == ["Running", "Running"]
    assert {p["spec"]["nodeName"] for p in pods} <= set(FAKE_NODES)
    print(f"2 replicas ready in {elapsed:.1f}s; control plane started in {kube_cluster.started_seconds:.1f}s")


def test_a_stopped_control_plane_leaves_no_process(tmp_path: Path):
    with start_control_plane(tmp_path) as cp:
        assert sorted(cp.procs) == sorted([*(f"cp-1/{name}" for name in PER_NODE), "kwok"])
        assert cp.kubectl("get", "--raw", "/readyz").strip() == "ok"
        assert leftover_processes(tmp_path)  # the check sees live components
    assert leftover_processes(tmp_path) == []
    assert all(proc.returncode is not None for proc in cp.procs.values())
    print(f"second control plane started in {cp.started_seconds:.1f}s")


def flags(args: list[str]) -> dict[str, str]:
    return dict((arg.split("=", 1) + [""])[:2] for arg in args[1:])


@pytest.mark.parametrize("plan", [ONE, THREE], ids=["one", "three"])
def test_components_run_with_vmkubes_flags_changing_only_where_they_listen(tmp_path: Path, plan):
    """Each command is vmkube's own, moved into the work directory; the only flags that
    differ say where the process listens, and etcd skips its disk flushes."""
    ports = Ports(11, 12, 13, 14, 15)
    bins = {name: Path("/toolchain") / name for name in (*PER_NODE, "kwok", "stages.yaml")}
    cmds = commands(bins, tmp_path, plan, ports)
    for node in plan.control_planes:
        at = layout(tmp_path, node, ports)
        theirs = {"etcd": render.etcd_args(plan, node, at), "kube-apiserver": render.apiserver_args(plan, node, at),
                  "kube-controller-manager": render.controller_manager_args(plan, at),
                  "kube-scheduler": render.scheduler_args(plan, at)}
        for name in PER_NODE:
            mine = cmds[f"{node.name}/{name}"]
            assert mine[0] == f"/toolchain/{name}"
            changed = {k for k in flags(mine).keys() | flags(theirs[name]).keys()
                       if flags(mine).get(k) != flags(theirs[name]).get(k)}
            assert changed <= {"--bind-address", "--secure-port", "--unsafe-no-fsync"}, (node.name, name, changed)
            assert all(str(tmp_path / node.name) in v for k, v in flags(mine).items() if v.startswith("/")
                       and k != "--config"), (node.name, name)


def test_a_component_that_dies_fails_the_start_with_its_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def broken(*args):
        cmds = commands(*args)
        cmds["cp-1/kube-apiserver"].append("--no-such-flag")
        return cmds
    monkeypatch.setattr(kube, "commands", broken)
    with pytest.raises(pytest.fail.Exception) as failed:
        with start_control_plane(tmp_path):
            pass
    assert "cp-1/kube-apiserver exited" in str(failed.value)
    assert "unknown flag: --no-such-flag" in str(failed.value)
    assert leftover_processes(tmp_path) == []


def test_a_missing_binary_fails_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(kube, "tool_dir", lambda tool: tmp_path / tool)
    with pytest.raises(pytest.fail.Exception) as failed:
        with start_control_plane(tmp_path / "work"):
            pass
    assert f"{tmp_path}/kwok/kwok (tools/build kwok)" in str(failed.value)


def test_a_component_dies_with_the_process_that_started_it():
    """If pytest is killed, its control plane goes with it (setpriv --pdeathsig)."""
    starter = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time; from tests.fixtures.kube import DIE_WITH_PARENT; "
         "child = subprocess.Popen([*DIE_WITH_PARENT, 'sleep', '300'], start_new_session=True); "
         "print(child.pid, flush=True); time.sleep(300)"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    child = int(starter.stdout.readline())
    assert _alive(child)
    starter.kill()
    starter.wait()
    deadline = time.monotonic() + 10
    while _alive(child):
        assert time.monotonic() < deadline, f"pid {child} outlived the process that started it"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
