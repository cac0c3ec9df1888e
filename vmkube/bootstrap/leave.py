"""Workers that left the config leave the cluster before their VMs go:
cordon, drain, stop the kubelet, delete the Node (k0sctl's and kubespray's order).

The facts (is there a Node, is it cordoned) decide the steps, so a run that
stopped half-way resumes where it was and a node already gone needs nothing.
"""

from __future__ import annotations

import logging
from urllib.parse import quote
from dataclasses import dataclass

from vmkube.errors import BootstrapError, VmkubeError
from vmkube.nodes.phases import Command, Node

from vmkube.bootstrap import api, drain
from vmkube.bootstrap.kubectl import kubectl_step

log = logging.getLogger("vmkube.bootstrap")
DRAIN_TIMEOUT = 300
LEAVING_CONNECT_TIMEOUT = 30.0
ON_CONTROL_PLANE, ON_NODE = "control-plane", "node"


@dataclass(frozen=True)
class NodeObject:
    exists: bool
    cordoned: bool = False


@dataclass(frozen=True)
class LeaveStep:
    where: str  # ON_CONTROL_PLANE or ON_NODE
    command: Command
    kind: str = ""  # "drain": its failure keeps the VM; "stop": best effort


def decide_leave(name: str, node: NodeObject) -> list[LeaveStep]:
    if not node.exists:
        return []
    steps = [] if node.cordoned else [LeaveStep(ON_CONTROL_PLANE, kubectl_step("cordon", name, why="cordoning"))]
    # --force: bare pods have no controller to bring them back anywhere; they go with the node.
    steps.append(LeaveStep(ON_CONTROL_PLANE, kubectl_step(
        "drain", name, "--ignore-daemonsets", "--delete-emptydir-data", "--force", f"--timeout={DRAIN_TIMEOUT}s",
        why=f"draining (up to {DRAIN_TIMEOUT}s)", timeout=DRAIN_TIMEOUT + 60), "drain"))
    # A running kubelet would register the Node again.
    steps.append(LeaveStep(ON_NODE, Command(("systemctl", "disable", "--now", "kubelet", "kube-proxy")), "stop"))
    steps.append(LeaveStep(ON_CONTROL_PLANE, kubectl_step("delete", "node", name, "--ignore-not-found",
                                                          why="deleting its Node object")))
    return steps


def node_objects(control_plane: Node, names: list[str]) -> dict[str, NodeObject]:
    """Each leaving node's Node object as the API has it (one read)."""
    found = {}
    for name, answer in zip(names, api.get(control_plane, *(f"/api/v1/nodes/{quote(n)}" for n in names))):
        obj = answer.json()
        if answer.status == 404:
            found[name] = NodeObject(exists=False)
        elif obj is None:
            raise BootstrapError(f"{name}: cannot read its Node object: HTTP {answer.status}: "
                                 f"{answer.body.strip()[-300:]}")
        else:
            found[name] = NodeObject(exists=True, cordoned=bool(obj.get("spec", {}).get("unschedulable")))
    return found


def remove_nodes(control_plane: Node, leaving: list[Node]) -> None:
    """The drain preflight for all of them first, then one node at a time, so the pods it
    runs find room on the others."""
    if not leaving:
        return
    objects = node_objects(control_plane, [n.name for n in leaving])
    present = [name for name, obj in objects.items() if obj.exists]
    for found in drain.preflight(control_plane, present) if present else []:
        for what in found.lost:
            log.warning("%s: draining: %s", found.node, what)
    for node in leaving:
        steps = decide_leave(node.name, objects[node.name])
        if not steps:
            log.info("%s: no Node object left; nothing to drain", node.name)
        for step in steps:
            _run(control_plane, node, step)


def _run(control_plane: Node, node: Node, step: LeaveStep) -> None:
    cmd = step.command
    if cmd.why:
        log.info("%s: %s", node.name, cmd.why)
    if step.where == ON_NODE:
        # A node that is already unreachable cannot run its kubelet; its VM is removed next anyway.
        node.session.connect_timeout = LEAVING_CONNECT_TIMEOUT
        try:
            node.session.run(list(cmd.argv), sudo=True, change=True)
        except VmkubeError as exc:
            log.warning("%s: could not stop its kubelet (%s); deleting the Node anyway", node.name, exc)
        finally:
            node.session.close()
        return
    result = control_plane.session.run(cmd.argv, sudo=True, check=step.kind != "drain", timeout=cmd.timeout,
                                       change=True)
    if step.kind == "drain" and not result.ok:
        raise BootstrapError(f"{node.name}: drain failed; the node stays cordoned and its VM is kept: "
                             f"{result.stderr.strip()[-300:]}")
