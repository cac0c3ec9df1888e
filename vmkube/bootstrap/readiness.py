"""Phases and checks that wait for the cluster: etcd and the API server serving,
every node Ready, and the labels kubelets may not set themselves.

Every wait goes through vmkube.waiting.wait_for: one deadline, and an error that
names what did not get ready and how it last looked."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any, Mapping

from vmkube.contracts import NodeStatus
from vmkube.errors import BootstrapError
from vmkube.nodes.phases import PARALLEL, Command, Node, execute
from vmkube.roles import CONTROL_PLANE
from vmkube.waiting import wait_for

from vmkube.bootstrap import api, render
from vmkube.bootstrap.kubectl import DEFAULT_ACCOUNT_PATH, NODES_PATH, kubectl_step
from vmkube.bootstrap.plan import Plan

# Measured on 2 emulated cores (QEMU TCG): a starting control plane answered its first node
# listing 16 minutes after its API server started.
READY_TIMEOUT = 1200.0
ROLE_LABEL = "node-role.kubernetes.io/control-plane"
# Between two looks. Each look is a curl on the control plane (bootstrap/api.py) and a TLS
# handshake, whose CPU under emulation comes from the API server being waited for.
PROBE_INTERVAL = 5.0


def _wait(what: str, probe) -> Any:
    return wait_for(what, probe, timeout=READY_TIMEOUT, interval=PROBE_INTERVAL, error=BootstrapError)


def etcd_healthy(node: Node) -> None:
    command = [*render.etcdctl_args(), "--command-timeout=5s", "endpoint", "health"]

    def probe() -> tuple[bool, str]:
        result = node.session.run(command, sudo=True, check=False)
        return result.ok, result.stderr or result.stdout
    _wait(f"{node.name}: etcd", probe)


def api_ready(node: Node) -> None:
    def probe() -> tuple[bool, str]:
        [answer] = api.get(node, "/readyz")
        return answer.ok and answer.body.strip() == "ok", answer.body or f"HTTP {answer.status}"
    _wait(f"{node.name}: the API server", probe)


def serving(node: Node) -> None:
    """The control plane answers again: its etcd member is healthy and its API server ready."""
    etcd_healthy(node)
    api_ready(node)


# The kubelet's own health endpoint (KubeletConfiguration healthzPort, on loopback only).
# Preflight requires curl on control planes only: a worker without it is judged by systemd.
KUBELET_HEALTHZ = "http://127.0.0.1:10248/healthz"
AGENTS_HEALTHY = (f"if command -v curl >/dev/null; then curl -fsS -m 5 {KUBELET_HEALTHZ}; "
                  "else systemctl is-active --quiet kubelet; fi && systemctl is-active --quiet kube-proxy")


def agents_healthy(node: Node) -> None:
    """The node's kubelet answers its health check and kube-proxy runs: the rolling
    restart of node agents goes on to the next node."""
    def probe() -> tuple[bool, str]:
        result = node.session.run(AGENTS_HEALTHY, sudo=True, check=False)
        return result.ok, result.stderr or result.stdout or f"exit {result.code}"
    _wait(f"{node.name}: kubelet and kube-proxy", probe)


@dataclass
class ApiReady:
    title: str = "wait for the API server"
    mode: str = PARALLEL

    def applies(self, node: Node) -> bool:
        return node.role == CONTROL_PLANE

    def run(self, node: Node) -> None:
        api_ready(node)


def ready_nodes(items: list[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Node name -> its object, for the nodes whose Ready condition is True."""
    ready = {}
    for item in items:
        conds = {c["type"]: c["status"] for c in item["status"].get("conditions", [])}
        if conds.get("Ready") == "True":
            ready[item["metadata"]["name"]] = item
    return ready


def decide_labels(plan: Plan, items: Mapping[str, Mapping[str, Any]]) -> list[Command]:
    """Labels and the control-plane role that kubelets may not set themselves (NodeRestriction)."""
    steps = []
    for n in plan.nodes:
        want = {k: v for k, v in n.labels.items() if render.restricted_label(k)}
        if n.role == CONTROL_PLANE:
            want[ROLE_LABEL] = ""
        have = items.get(n.name, {}).get("metadata", {}).get("labels", {})
        missing = {k: v for k, v in want.items() if have.get(k) != v}
        if missing:
            pairs = [f"{k}={v}" for k, v in sorted(missing.items())]
            steps.append(kubectl_step("label", "node", n.name, "--overwrite", *pairs,
                                      why=f"labelling {n.name}: {' '.join(shlex.quote(p) for p in pairs)}"))
    return steps


@dataclass
class NodesReady:
    """On the first control plane: every node Ready and the default service account made
    (pods need it); then the labels only an admin may set."""
    plan: Plan
    first: Node
    title: str = "wait for every node to be Ready"
    mode: str = PARALLEL

    def applies(self, node: Node) -> bool:
        return node is self.first

    def facts(self, node: Node) -> tuple[dict[str, Mapping[str, Any]], bool]:
        """The Ready nodes, and whether the default service account exists (one read)."""
        nodes, account = api.get(node, NODES_PATH, DEFAULT_ACCOUNT_PATH)
        listed = nodes.json()
        return ready_nodes((listed or {}).get("items") or []), account.ok

    def run(self, node: Node) -> None:
        wanted = {n.name for n in self.plan.nodes}

        def probe() -> tuple[bool, Any]:
            ready, account = self.facts(node)
            if wanted <= set(ready) and account:
                return True, ready
            missing = ", ".join(sorted(wanted - set(ready)))
            return False, f"nodes not Ready: {missing}" if missing else "the default service account is missing"
        ready = _wait("the cluster", probe)
        execute(node, decide_labels(self.plan, ready))


def node_report(control_plane: Node) -> list[NodeStatus]:
    """What the API server says about each node: readiness, kubelet version, address."""
    [answer] = api.get(control_plane, NODES_PATH)
    listed = answer.json()
    if listed is None:
        raise BootstrapError(f"{control_plane.name}: reading the nodes failed: HTTP {answer.status}: "
                             f"{answer.body.strip()[-300:]}")
    items = listed.get("items") or []
    out = []
    for item in items:
        conds = {c["type"]: c["status"] for c in item["status"].get("conditions", [])}
        addresses = {a["type"]: a["address"] for a in item["status"].get("addresses", [])}
        out.append(NodeStatus(item["metadata"]["name"], conds.get("Ready") == "True",
                              item["status"]["nodeInfo"]["kubeletVersion"], addresses.get("InternalIP", "")))
    return sorted(out, key=lambda n: n.name)
