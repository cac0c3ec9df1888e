"""kubectl on the first control plane, with the super-admin kubeconfig vmkube keeps there
for itself (system:masters; the operator's own kubeconfig can be revoked, this one is
never handed out)."""

from __future__ import annotations

import shlex

from vmkube.bootstrap.render import BIN_DIR, SUPER_ADMIN_CONF
from vmkube.nodes.phases import Command, Node
from vmkube.nodes.ssh import Result

KUBECTL = f"{BIN_DIR}/kubectl --kubeconfig {SUPER_ADMIN_CONF}"
# Read through `kubectl get --raw`: no API discovery first, which under QEMU TCG made
# each `kubectl get nodes` take 10-15 s against 4 s for a raw read.
NODES_PATH = "/api/v1/nodes"
DEFAULT_ACCOUNT_PATH = "/api/v1/namespaces/default/serviceaccounts/default"


def kubectl(node: Node, args: str, check: bool = True, timeout: float = 120, change: bool = False) -> Result:
    return node.session.run(f"{KUBECTL} {args}", sudo=True, check=check, timeout=timeout, change=change)


def kubectl_step(*args: str, why: str = "", timeout: float = 120) -> Command:
    """A kubectl command a phase decided on; arguments are quoted one by one."""
    return Command(f"{KUBECTL} {shlex.join(args)}", why=why, timeout=timeout)
