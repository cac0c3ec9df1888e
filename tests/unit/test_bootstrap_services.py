"""The order in which the services phase starts and restarts control-plane units.

systemd does not run in the SSH lab's namespaces, so the nodes here are scripted
sessions that answer systemctl, etcdctl and curl as a node would; what is
tested is vmkube's ordering. The real units start and restart on real VMs in
tests/e2e."""

from __future__ import annotations

import threading
import time

from vmkube.bootstrap import render
from vmkube.bootstrap.desired import Desired
from vmkube.bootstrap.readiness import serving
from vmkube.bootstrap.services import RollingRestart, Services
from vmkube.nodes.phases import Node, run_phases
from vmkube.nodes.ssh import Result, quote

UNITS = render.CONTROL_PLANE_UNITS


class ScriptedNode:
    """Answers the phase's commands; restarts take a moment and are logged with times."""

    def __init__(self, name: str, active: bool, events: list, barrier: threading.Barrier | None = None):
        self.name, self.active, self.events, self.barrier = name, active, events, barrier
        self.mutations = 0

    def run(self, command, *, sudo=False, check=True, timeout=600.0, change=False, **_kw) -> Result:
        text = quote(command)
        self.mutations += change
        if text.startswith("for u in"):
            state = "active" if self.active else "inactive"
            return Result(text, 0, "".join(f"{u} {state} enabled\n" for u in UNITS), "")
        if text.startswith("systemctl restart"):
            self.events.append((self.name, "restart", text.split()[-1], time.monotonic()))
            if self.barrier is not None:
                self.barrier.wait(timeout=5)  # fails unless every node gets here at once
            time.sleep(0.02)
            return Result(text, 0, "", "")
        if "etcdctl" in text:
            self.events.append((self.name, "ready-check", "", time.monotonic()))
            return Result(text, 0, "healthy", "")
        if "/readyz" in text:  # vmkube.bootstrap.api's curl: the body, then its status line
            self.events.append((self.name, "ready-check", "", time.monotonic()))
            return Result(text, 0, "ok\n--vmkube-status 200\n", "")
        return Result(text, 0, "", "")


def nodes(active: bool, events: list, barrier=None) -> list[Node]:
    return [Node(f"cp-{i}", "control-plane", f"10.0.0.{i}", ScriptedNode(f"cp-{i}", active, events, barrier))
            for i in (1, 2, 3)]


def phases(rolling: bool, touched: list[str]) -> list:
    """The two control-plane phases of a bootstrap: parallel starts, then the serial restarts."""
    changed = {f"cp-{i}": touched for i in (1, 2, 3)}
    desired = Desired(plan=None, certs={}, binaries={}, images={}, changed=changed)
    return [Services(desired, UNITS, ("control-plane",), title="start the control plane", rolling=rolling),
            RollingRestart(desired, UNITS, serving)]


def test_changed_control_planes_restart_one_at_a_time_each_serving_before_the_next():
    events: list = []
    run_phases(nodes(True, events), phases(True, ["/etc/systemd/system/etcd.service",
                                                  "/etc/kubernetes/pki/apiserver.crt"]))
    order = [(name, what) for name, what, _unit, _t in events]
    runs = [order[i:i + 4] for i in range(0, len(order), 4)]  # per node: 2 restarts, 2 checks
    assert len(runs) == 3 and sorted(run[0][0] for run in runs) == ["cp-1", "cp-2", "cp-3"]
    for run in runs:
        assert len({name for name, _ in run}) == 1, order  # no other node in between
        assert [what for _, what in run] == ["restart", "restart", "ready-check", "ready-check"], order
    restarted = [(name, unit) for name, what, unit, _t in events if what == "restart"]
    assert {unit for _, unit in restarted} == {"etcd", "kube-apiserver"}


def test_first_starts_run_on_every_control_plane_at_once():
    events: list = []
    barrier = threading.Barrier(3)  # etcd members need each other: serial starts would never meet
    run_phases(nodes(False, events, barrier), phases(True, []))
    starts = [e for e in events if e[1] == "restart"]
    assert len(starts) == 3 * len(UNITS)
    assert not [e for e in events if e[1] == "ready-check"]


def test_a_converged_control_plane_restarts_nothing():
    events: list = []
    cluster = nodes(True, events)
    run_phases(cluster, phases(True, []))
    assert events == [] and [n.session.mutations for n in cluster] == [0, 0, 0]
