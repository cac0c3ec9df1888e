"""One bootstrap run from plain inputs: what the Pulumi resource calls.

Inputs are the nodes (with addresses and pinned host keys), SSH credentials,
Kubernetes settings and where the binaries come from; the result is the
kubeconfig, node facts, the PKI and the pod ranges to keep for the next run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from infra import binaries, pki
from infra.phases import Node
from infra.ssh import Endpoint, Session

from .plan import CAS, Plan, PlanNode, allocate_pod_cidrs, wanted_certs
from . import images
from .leave import remove_nodes
from .run import Inputs, bootstrap, node_report

log = logging.getLogger("vmkube.bootstrap")
BINARIES = ("etcd", "etcdctl", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl",
            "kubelet", "kube-proxy")


def local_binaries(source: Mapping[str, Any]) -> dict[str, Path]:
    """Binary name -> file on this machine, from the toolchain, a directory or the mirror's cache."""
    if source.get("source") == "url":
        return binaries.fetch(source["urls"], source["sha256"])
    dirs = [Path(d) for d in source.get("dirs", [])]
    out = {}
    for name in BINARIES:
        found = [d / name for d in dirs if (d / name).is_file()]
        if not found:
            where = ", ".join(map(str, dirs)) or "nowhere"
            raise FileNotFoundError(f"vmkube:kubernetes.binaries: {name} not found in {where} "
                                    "(run `make toolchain`, or fix binaries.dir)")
        out[name] = found[0]
    return out


def sessions(props: Mapping[str, Any], nodes: list[Mapping[str, Any]] | None = None) -> list[Node]:
    """A session per node (not yet connected); ``nodes`` defaults to the props' own."""
    ssh = props["ssh"]
    bastion = None
    if ssh.get("bastion"):
        b = ssh["bastion"]
        bastion = Endpoint(b["host"], int(b["port"]), b["user"], b["hostKey"])
    return [Node(n["name"], n["role"], n["ip"],
                 Session(n["name"], Endpoint(n["ip"], int(ssh["port"]), ssh["user"], n["hostKey"]),
                         ssh["privateKey"], bastion=bastion,
                         connect_timeout=float(ssh.get("connectTimeout") or 300)))
            for n in (props["nodes"] if nodes is None else nodes)]


def leaving_nodes(props: Mapping[str, Any], previous: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Workers bootstrapped before that are no longer in the config."""
    names = {n["name"] for n in props["nodes"]}
    return [n for n in previous.get("nodes") or [] if n["name"] not in names and n.get("role") == "worker"]


def status(props: Mapping[str, Any]) -> list[dict]:
    """Node readiness as the API server reports it, asked through the first control plane."""
    nodes = [n for n in sessions(props) if n.role == "control-plane"][:1]
    try:
        return node_report(nodes[0]) if nodes else []
    finally:
        for node in nodes:
            node.session.close()


def converge(props: Mapping[str, Any], previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    previous = previous or {}
    names = [n["name"] for n in props["nodes"]]
    cidrs = allocate_pod_cidrs(props["podCidr"], names, previous.get("podCidrs") or {})
    plan = Plan(props["cluster"], props["version"], props["podCidr"], props["serviceCidr"], tuple(
        PlanNode(n["name"], n["role"], n["ip"], cidrs[n["name"]], dict(n.get("labels") or {}),
                 tuple(n.get("taints") or ())) for n in props["nodes"]), endpoint=props.get("endpoint") or "")
    kept = {k: pki.CertKey(v["cert"], v["key"]) for k, v in (previous.get("pki") or {}).items()}
    certs = pki.ensure(kept, wanted_certs(plan), CAS)
    certs["service-account"] = kept.get("service-account") or pki.service_account_key()
    preload = images.preloaded(props["binaries"])
    nodes = sessions(props)
    leaving = sessions(props, leaving_nodes(props, previous))
    try:
        inputs = Inputs(plan, certs, local_binaries(props["binaries"]), preload)
        bootstrap(nodes, inputs, {n["name"]: int(n["memoryMb"]) for n in props["nodes"]})
        first = next(n for n in nodes if n.role == "control-plane")
        remove_nodes(first, leaving)
        report = node_report(first)
        for node in nodes:
            log.info("%s: converged (%d change%s, %d connection%s)", node.name, node.session.mutations,
                     "" if node.session.mutations == 1 else "s", node.session.connections,
                     "" if node.session.connections == 1 else "s")
    finally:
        for node in nodes:
            node.session.close()
    return {
        "kubeconfig": pki.kubeconfig(plan.cluster, plan.api_server, certs["cluster-ca"].cert, "vmkube-admin",
                                     certs["admin"]),
        "apiServer": plan.api_server,
        "podCidrs": cidrs,
        "pki": {k: {"cert": v.cert, "key": v.key} for k, v in certs.items()},
        "nodeStatus": report,
    }
