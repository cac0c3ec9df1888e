"""Drain preflight: before any leaving node is cordoned, what its drain would be blocked
by or would lose, read from the API in one look.

Blocked (the run stops, naming each, and nothing is touched): a PodDisruptionBudget
that selects a pod on the node and allows no disruption now -- the drain would wait
for it until its timeout and leave the node cordoned half-way (the upgrade failure
kubespray and KubeOne users report most). Lost (named in a warning; the drain goes
ahead, as `kubectl drain --force --delete-emptydir-data` does): pods no controller
brings back elsewhere, and emptyDir volumes, whose data goes with the pod.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import quote

from vmkube.errors import BootstrapError
from vmkube.nodes.phases import Node

from vmkube.bootstrap import api

PDB_PATH = "/apis/policy/v1/poddisruptionbudgets"


def pods_path(node: str) -> str:
    return f"/api/v1/pods?fieldSelector={quote(f'spec.nodeName={node}', safe='')}"


@dataclass(frozen=True)
class DrainCheck:
    node: str
    blocked: list[str] = field(default_factory=list)  # why the drain cannot finish now
    lost: list[str] = field(default_factory=list)  # what goes with the node


def _matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A label selector (matchLabels and matchExpressions) against a pod's labels; an empty
    selector selects every pod of the namespace, as policy/v1 reads it."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and present and labels[key] in values) \
                or (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


def _evicted(pod: Mapping[str, Any]) -> bool:
    """What a drain evicts: not a DaemonSet's pod (ignored), not a finished one, not a mirror pod."""
    meta = pod.get("metadata", {})
    if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
        return False
    if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
        return False
    return not any(o.get("kind") == "DaemonSet" for o in meta.get("ownerReferences") or [])


def _ready(pod: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in pod.get("status", {}).get("conditions") or [])


def _refuses(pdb: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    """Whether the eviction API would refuse this pod under this budget now: a healthy pod when
    no disruption is allowed; an unhealthy one only while the budget itself is short of healthy
    pods (policy/v1's IfHealthyBudget, the default; AlwaysAllow evicts it regardless)."""
    status = pdb.get("status", {})
    if status.get("disruptionsAllowed", 0) > 0:
        return False
    if _ready(pod):
        return True
    if pdb.get("spec", {}).get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
        return False
    return status.get("currentHealthy", 0) < status.get("desiredHealthy", 0)


def check(node: str, pods: list[Mapping[str, Any]], pdbs: list[Mapping[str, Any]]) -> DrainCheck:
    result = DrainCheck(node)
    evicted = [p for p in pods if _evicted(p)]
    for pdb in pdbs:
        meta = pdb.get("metadata", {})
        hit = [p["metadata"]["name"] for p in evicted if p["metadata"].get("namespace") == meta.get("namespace")
               and _matches(pdb.get("spec", {}).get("selector"), p["metadata"].get("labels") or {})
               and _refuses(pdb, p)]
        if hit:
            result.blocked.append(f"PodDisruptionBudget {meta.get('namespace')}/{meta.get('name')} allows no "
                                  f"disruption now (pods {', '.join(sorted(hit))})")
    for pod in evicted:
        meta = pod["metadata"]
        name = f"{meta.get('namespace')}/{meta.get('name')}"
        if not meta.get("ownerReferences"):
            result.lost.append(f"pod {name} has no controller to start it elsewhere")
        empty = [v["name"] for v in pod.get("spec", {}).get("volumes") or [] if "emptyDir" in v]
        if empty:
            result.lost.append(f"pod {name} loses its emptyDir volume{'s' if len(empty) > 1 else ''} "
                               f"{', '.join(empty)}")
    return result


def preflight(control_plane: Node, names: list[str]) -> list[DrainCheck]:
    """Every leaving node's check in one read; BootstrapError naming each blocker, if any."""
    answers = api.get(control_plane, PDB_PATH, *(pods_path(n) for n in names))
    docs = [a.json() for a in answers]
    if any(d is None for d in docs):
        failed = next(a for a in answers if a.json() is None)
        raise BootstrapError(f"drain preflight: cannot read pods and disruption budgets (HTTP {failed.status}: "
                             f"{failed.body.strip()[-200:]}); no node was touched")
    pdbs = docs[0].get("items") or []
    checks = [check(n, doc.get("items") or [], pdbs) for n, doc in zip(names, docs[1:])]
    blocked = [f"{c.node}: {why}" for c in checks for why in c.blocked]
    if blocked:
        raise BootstrapError("drain preflight: " + "; ".join(blocked) + "; no node was touched. Wait until the "
                             "budget allows a disruption (more replicas Ready), or relax it, then run `up` again")
    return checks
