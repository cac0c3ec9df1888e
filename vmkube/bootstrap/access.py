"""Phases on the first control plane that secure the API once it serves:

- AdminBinding: the operator's kubeconfig (group vmkube:cluster-admins) is bound to
  cluster-admin by a ClusterRoleBinding, so deleting that binding revokes it
  (kubeadm's way since 1.29; system:masters cannot be revoked).
- RewriteSecrets: once Secrets are encrypted at rest, the ones written before are
  rewritten so that none stays in etcd in plaintext (once per key: a mark on the node).
"""

from __future__ import annotations

from dataclasses import dataclass

from vmkube.nodes.phases import PARALLEL, Command, Node, execute

from vmkube.bootstrap import api
from vmkube.bootstrap.kubectl import DEFAULT_ACCOUNT_PATH, KUBECTL, kubectl_step
from vmkube.bootstrap.plan import ADMIN_GROUP

ADMIN_BINDING = "vmkube:cluster-admins"
BINDING_PATH = f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{ADMIN_BINDING}"
MARK_DIR = "/var/lib/vmkube"


def decide_binding(exists: bool, account: bool = True) -> list[Command]:
    steps = [] if exists else [kubectl_step("create", "clusterrolebinding", ADMIN_BINDING, "--clusterrole=cluster-admin",
                                            f"--group={ADMIN_GROUP}", why=f"binding {ADMIN_GROUP} to cluster-admin")]
    if not account:
        # Pods of the default namespace need its service account. The controller manager makes it
        # too, but under load only minutes after its start (measured: 3 min under TCG); it adopts
        # one that exists.
        steps.append(kubectl_step("create", "serviceaccount", "default", "--namespace=default",
                                  why="creating the default namespace's service account"))
    return steps


@dataclass
class AdminBinding:
    first: Node
    title: str = "bind the admin kubeconfig's group to cluster-admin; the default service account"
    mode: str = PARALLEL

    def applies(self, node: Node) -> bool:
        return node is self.first

    def facts(self, node: Node) -> tuple[bool, bool]:
        """Whether the binding and the default service account exist (one read)."""
        binding, account = api.get(node, BINDING_PATH, DEFAULT_ACCOUNT_PATH)
        return binding.ok, account.ok

    def run(self, node: Node) -> None:
        execute(node, decide_binding(*self.facts(node)))


def rewritten_mark(key_name: str) -> str:
    return f"{MARK_DIR}/secrets-encrypted-{key_name}"


def decide_rewrite(key_name: str, marked: bool) -> list[Command]:
    if marked:
        return []
    # Every Secret read (decrypted or plain) and written back: the API server stores it encrypted.
    return [Command(f"{KUBECTL} get secrets --all-namespaces -o json | {KUBECTL} replace -f - >/dev/null",
                    why="rewriting existing Secrets so etcd holds them encrypted", timeout=600),
            Command(("sh", "-c", f"mkdir -p {MARK_DIR} && touch {rewritten_mark(key_name)}"))]


@dataclass
class RewriteSecrets:
    first: Node
    key_name: str
    title: str = "encrypt the Secrets written before encryption at rest was on"
    mode: str = PARALLEL

    def applies(self, node: Node) -> bool:
        return node is self.first

    def facts(self, node: Node) -> bool:
        return node.session.run(["test", "-e", rewritten_mark(self.key_name)], check=False).ok

    def run(self, node: Node) -> None:
        execute(node, decide_rewrite(self.key_name, self.facts(node)))
