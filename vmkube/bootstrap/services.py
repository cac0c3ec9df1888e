"""Phases: systemd units enabled and running, restarted when what they read changed.

Restarting every control plane's components at once would take etcd's quorum
and all API servers away together, so with several control planes a changed
unit restarts in RollingRestart, a serial phase: one node at a time, each
serving again (etcd member healthy, API server ready) before the next. First
starts stay parallel in Services: etcd members wait for each other. Kubelets and
kube-proxies roll the same way on a cluster that was up before (a renewed
certificate, a new setting): one node at a time, each healthy before the next.
A unit Services started this run is not restarted again by a rolling phase.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Mapping

from vmkube.nodes.phases import PARALLEL, SERIAL, Command, Node, execute
from vmkube.roles import CONTROL_PLANE

from vmkube.bootstrap import render
from vmkube.bootstrap.desired import Desired

log = logging.getLogger("vmkube.bootstrap")
UNIT_DIR = "/etc/systemd/system/"

# Which changed paths make which service restart.
UNIT_INPUTS = {
    "vmkube-routes": ("/etc/systemd/system/vmkube-routes.service",),
    "containerd": ("/etc/containerd/",),
    "etcd": ("/etc/systemd/system/etcd.service", "/etc/kubernetes/pki/etcd/", "/usr/local/bin/etcd"),
    "kube-apiserver": ("/etc/systemd/system/kube-apiserver.service", "/etc/kubernetes/pki/",
                       f"/etc/kubernetes/{render.ENCRYPTION_CONFIG}", f"/etc/kubernetes/{render.AUDIT_POLICY}",
                       "/usr/local/bin/kube-apiserver"),
    "kube-controller-manager": ("/etc/systemd/system/kube-controller-manager.service",
                                "/etc/kubernetes/controller-manager.conf", "/etc/kubernetes/pki/ca.",
                                "/etc/kubernetes/pki/sa.", "/usr/local/bin/kube-controller-manager"),
    "kube-scheduler": ("/etc/systemd/system/kube-scheduler.service", "/etc/kubernetes/scheduler.conf",
                       "/usr/local/bin/kube-scheduler"),
    "kubelet": ("/etc/systemd/system/kubelet.service", "/var/lib/kubelet/", "/etc/kubernetes/kubelet.conf",
                "/etc/kubernetes/pki/ca.crt", "/usr/local/bin/kubelet"),
    "haproxy": (render.HAPROXY_CONFIG,),
    "kube-proxy": ("/etc/systemd/system/kube-proxy.service", "/var/lib/kube-proxy/",
                   "/etc/kubernetes/kube-proxy.conf", "/usr/local/bin/kube-proxy"),
}

UnitStates = Mapping[str, tuple[str, str]]  # unit -> (is-active, is-enabled)


def states_script(units: tuple[str, ...]) -> str:
    return ("for u in " + " ".join(units) + "; do printf '%s %s %s\\n' \"$u\" "
            "\"$(systemctl is-active \"$u\" 2>/dev/null)\" \"$(systemctl is-enabled \"$u\" 2>/dev/null)\"; done")


def parse_states(out: str) -> dict[str, tuple[str, str]]:
    states = {}
    for line in out.splitlines():
        parts = line.split()
        if parts:
            states[parts[0]] = tuple((parts[1:] + ["unknown", "unknown"])[:2])
    return states


def touched(unit: str, changed: list[str]) -> bool:
    return any(p.startswith(prefix) for p in changed for prefix in UNIT_INPUTS[unit])


def read_states(node: Node, units: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    return parse_states(node.session.run(states_script(units), sudo=True,
                                         label=f"reading the state of {', '.join(units)}").stdout)


def decide_units(units: tuple[str, ...], states: UnitStates, changed: list[str], *,
                 restart_changed: bool = True) -> list[Command]:
    """Enable what is not enabled, start what is not running, restart a running unit
    whose inputs changed (unless a rolling restart does that)."""
    steps = []
    if any(p.startswith(UNIT_DIR) for p in changed):
        steps.append(Command(("systemctl", "daemon-reload")))
    for unit in units:
        active, enabled = states.get(unit, ("unknown", "unknown"))
        if enabled != "enabled":
            steps.append(Command(("systemctl", "enable", unit)))
        if active != "active":
            steps.append(Command(("systemctl", "restart", unit), why=f"starting {unit}"))
        elif restart_changed and touched(unit, changed):
            steps.append(Command(("systemctl", "restart", unit), why=f"restarting {unit} (its configuration changed)"))
    return steps


@dataclass
class Services:
    desired: Desired
    units: tuple[str, ...]
    roles: tuple[str, ...]
    title: str = "start services"
    rolling: bool = False  # changed units restart in RollingRestart instead
    mode: str = PARALLEL

    def applies(self, node: Node) -> bool:
        return node.role in self.roles

    def facts(self, node: Node) -> dict[str, tuple[str, str]]:
        return read_states(node, self.units)

    def decide(self, node: Node, states: UnitStates) -> list[Command]:
        return decide_units(self.units, states, self.desired.changed.get(node.name, []),
                            restart_changed=not self.rolling)

    def run(self, node: Node) -> None:
        states = self.facts(node)
        execute(node, self.decide(node, states))
        # Started just now, so running on its new files: a rolling restart leaves it be.
        self.desired.started.setdefault(node.name, set()).update(
            u for u in self.units if states.get(u, ("", ""))[0] != "active")


def decide_restarts(units: tuple[str, ...], states: UnitStates, changed: list[str],
                    started: set[str] | frozenset[str] = frozenset()) -> list[Command]:
    """The running units whose inputs changed; a unit not running, or started this run, was started already."""
    return [Command(("systemctl", "restart", u), why=f"restarting {u} (its configuration changed)")
            for u in units if states.get(u, ("", ""))[0] == "active" and touched(u, changed) and u not in started]


@dataclass
class RollingRestart:
    """Serial: each node restarts its changed units and serves again before the next."""
    desired: Desired
    units: tuple[str, ...]
    ready: Callable[[Node], None]  # waits until the node serves again (control planes: etcd and API server)
    title: str = "restart changed control planes one at a time"
    mode: str = SERIAL
    roles: tuple[str, ...] = (CONTROL_PLANE,)

    def _pending(self, node: Node) -> list[str]:
        started = self.desired.started.get(node.name, set())
        return [u for u in self.units if u not in started and touched(u, self.desired.changed.get(node.name, []))]

    def applies(self, node: Node) -> bool:
        return node.role in self.roles and bool(self._pending(node))

    def facts(self, node: Node) -> dict[str, tuple[str, str]]:
        return read_states(node, self.units)

    def decide(self, node: Node, states: UnitStates) -> list[Command]:
        return decide_restarts(self.units, states, self.desired.changed.get(node.name, []),
                               self.desired.started.get(node.name, set()))

    def run(self, node: Node) -> None:
        steps = self.decide(node, self.facts(node))
        if not steps:
            return
        execute(node, steps)
        log.info("%s: waiting for it to serve again before the next node restarts", node.name)
        self.ready(node)
