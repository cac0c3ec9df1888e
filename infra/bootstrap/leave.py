"""Workers that left the config leave the cluster before their VMs go:
cordon, drain, stop the kubelet, delete the Node (k0sctl's and kubespray's order).

Each step reads first, so a run that stopped half-way resumes where it was.
"""

from __future__ import annotations

import logging
import shlex

from infra.errors import VmkubeError
from infra.phases import Node

from .run import BootstrapError, kubectl

log = logging.getLogger("vmkube.bootstrap")
DRAIN_TIMEOUT = 300
LEAVING_CONNECT_TIMEOUT = 30.0


def remove_nodes(control_plane: Node, leaving: list[Node]) -> None:
    """One node at a time, so the pods it runs find room on the others."""
    for node in leaving:
        _remove(control_plane, node)


def _remove(control_plane: Node, node: Node) -> None:
    name = shlex.quote(node.name)
    found = kubectl(control_plane, f"get node {name} -o jsonpath={{.spec.unschedulable}}", check=False)
    if not found.ok:
        if "NotFound" not in found.stderr:
            raise BootstrapError(f"{node.name}: cannot read its Node object: {found.stderr.strip()[-300:]}")
        log.info("%s: no Node object left; nothing to drain", node.name)
        return
    if found.stdout.strip() != "true":
        log.info("%s: cordoning", node.name)
        kubectl(control_plane, f"cordon {name}", change=True)
    log.info("%s: draining (up to %ds)", node.name, DRAIN_TIMEOUT)
    # --force: bare pods have no controller to bring them back anywhere; they go with the node.
    drained = kubectl(control_plane, f"drain {name} --ignore-daemonsets --delete-emptydir-data --force "
                                     f"--timeout={DRAIN_TIMEOUT}s", check=False, timeout=DRAIN_TIMEOUT + 60,
                       change=True)
    if not drained.ok:
        raise BootstrapError(f"{node.name}: drain failed; the node stays cordoned and its VM is kept: "
                             f"{drained.stderr.strip()[-300:]}")
    _stop_kubelet(node)
    log.info("%s: deleting its Node object", node.name)
    kubectl(control_plane, f"delete node {name} --ignore-not-found", change=True)


def _stop_kubelet(node: Node) -> None:
    """A running kubelet would register the Node again; a node that is already
    unreachable cannot, and its VM is removed next anyway."""
    node.session.connect_timeout = LEAVING_CONNECT_TIMEOUT
    try:
        node.session.run(["systemctl", "disable", "--now", "kubelet", "kube-proxy"], sudo=True, change=True)
    except VmkubeError as exc:
        log.warning("%s: could not stop its kubelet (%s); deleting the Node anyway", node.name, exc)
    finally:
        node.session.close()
