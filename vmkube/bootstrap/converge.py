"""One bootstrap run from typed inputs: what the Pulumi resource calls.

Inputs are the nodes (with addresses and pinned host keys), SSH credentials,
Kubernetes settings and where the binaries come from (vmkube.contracts); the
result is the kubeconfig, node facts, the PKI and the pod ranges to keep for
the next run.
"""

from __future__ import annotations

import logging
from pathlib import Path

from vmkube import binaries, pki
from vmkube.config import KUBE_BINARIES
from vmkube.contracts import (BinarySource, BootstrapInputs, BootstrapState, CertPair, NodeInput, NodeStatus,
                              PkiPolicy, SnapshotPolicy)
from vmkube.errors import ConfigError
from vmkube.nodes.phases import Node, run_phases, timing_summary
from vmkube.nodes.ssh import Endpoint, Session
from vmkube.roles import ALL as ALL_ROLES, CONTROL_PLANE, WORKER

from vmkube.bootstrap import preload, render
from vmkube.bootstrap.access import AdminBinding, RewriteSecrets
from vmkube.bootstrap.adopt import adopt
from vmkube.bootstrap.addons import AddonConfig, Addons, dns_replicas, images as addon_images
from vmkube.bootstrap.configure import configure
from vmkube.bootstrap.desired import Desired
from vmkube.bootstrap.leave import remove_nodes
from vmkube.bootstrap.marker import Mark
from vmkube.bootstrap.plan import ADMIN_USER, CAS, Plan, PlanNode, allocate_pod_cidrs, wanted_certs
from vmkube.bootstrap.preflight import Preflight
from vmkube.bootstrap.readiness import ApiReady, NodesReady, agents_healthy, node_report, serving
from vmkube.bootstrap.services import RollingRestart, Services
from vmkube.bootstrap.snapshot import SnapshotBeforeRestart, take_by_policy

log = logging.getLogger("vmkube.bootstrap")
NODE_AGENTS = ("kubelet", "kube-proxy")


def local_binaries(source: BinarySource) -> dict[str, Path]:
    """Binary name -> file on this machine, from the toolchain, a directory or the mirror's cache."""
    if source.source == "url":
        return binaries.fetch(source.urls, source.sha256)
    dirs = [Path(d) for d in source.dirs]
    out, missing = {}, []
    for name in KUBE_BINARIES:
        found = [d / name for d in dirs if (d / name).is_file()]
        if found:
            out[name] = found[0]
        else:
            missing.append(name)
    if missing:
        where = ", ".join(map(str, dirs)) or "nowhere"
        raise ConfigError([f"vmkube:kubernetes.binaries: {', '.join(missing)} not found in {where} "
                           "(run `make toolchain`, or fix binaries.dir)"])
    return out


def sessions(inputs: BootstrapInputs, nodes: tuple[NodeInput, ...] | None = None) -> list[Node]:
    """A session per node (not yet connected); ``nodes`` defaults to the inputs' own."""
    ssh = inputs.ssh
    b = ssh.bastion
    bastion = Endpoint(b.host, b.port, b.user, b.host_key) if b else None
    return [Node(n.name, n.role, n.ip,
                 Session(n.name, Endpoint(n.ip, ssh.port, ssh.user, n.host_key), ssh.private_key,
                         bastion=bastion, connect_timeout=float(ssh.connect_timeout)))
            for n in (inputs.nodes if nodes is None else nodes)]


def leaving_nodes(inputs: BootstrapInputs, previous: BootstrapInputs | None) -> tuple[NodeInput, ...]:
    """Workers bootstrapped before that are no longer in the config."""
    names = {n.name for n in inputs.nodes}
    return tuple(n for n in (previous.nodes if previous else ()) if n.name not in names and n.role == WORKER)


def bootstrap(nodes: list[Node], desired: Desired, memory_mb: dict[str, int],
              snapshots: SnapshotPolicy = SnapshotPolicy(), existed: bool = False) -> list[tuple[str, float]]:
    """Every phase, in order, over the nodes it applies to; how long each took. ``existed``:
    the cluster was up before this run (a control-plane restart is then a disruptive step,
    and changed node agents restart one node at a time)."""
    cps = [n for n in nodes if n.role == CONTROL_PLANE]
    rolling = len(cps) > 1
    return run_phases(nodes, [
        Preflight(memory_mb=dict(memory_mb)),
        configure(desired),
        preload.ImportImages(desired),
        SnapshotBeforeRestart(snapshots, desired.changed, first=cps[0], existed=existed),
        Services(desired, ("vmkube-routes", "containerd"), ALL_ROLES, title="start node services"),
        Services(desired, render.CONTROL_PLANE_UNITS, (CONTROL_PLANE,), title="start the control plane",
                 rolling=rolling),
        *([RollingRestart(desired, render.CONTROL_PLANE_UNITS, serving)] if rolling else []),
        ApiReady(),
        AdminBinding(first=cps[0]),
        RewriteSecrets(first=cps[0], key_name=desired.certs["encryption"].cert),
        Services(desired, ("haproxy",), (WORKER,), title="start the API load balancer on workers"),
        Services(desired, NODE_AGENTS, ALL_ROLES, title="start kubelets", rolling=existed),
        *([RollingRestart(desired, NODE_AGENTS, agents_healthy, roles=ALL_ROLES,
                          title="restart changed kubelets and kube-proxies one node at a time")] if existed else []),
        NodesReady(desired.plan, first=cps[0]),
        Addons(desired.plan, desired.addons, desired.certs, desired.changed, first=cps[0]),
        Mark(),
    ])


# A refresh only reports: a control plane that is off (its VM powered down) must not hold
# `up` for the full SSH connect timeout before the pool can power it on.
STATUS_CONNECT_TIMEOUT = 20


def status(inputs: BootstrapInputs) -> list[NodeStatus]:
    """Node readiness as the API server reports it, asked through the first control plane."""
    nodes = [n for n in sessions(inputs) if n.role == CONTROL_PLANE][:1]
    for node in nodes:
        node.session.connect_timeout = min(node.session.connect_timeout, STATUS_CONNECT_TIMEOUT)
    try:
        return node_report(nodes[0]) if nodes else []
    finally:
        for node in nodes:
            node.session.close()


def cluster_pki(previous: BootstrapState, first: Node, plan: Plan,
                policy: PkiPolicy = PkiPolicy()) -> dict[str, pki.CertKey]:
    """The PKI from state; when state has none, what the first control plane already
    runs with (vmkube.bootstrap.adopt); whatever is still missing, no longer matches or
    is near its end (``policy``), made new. A renewed certificate is a changed file on
    its nodes, so the services phases restart what reads it, one node at a time."""
    kept = {k: pki.CertKey(v.cert, v.key) for k, v in previous.pki.items()}
    if not kept:
        kept = adopt(first.session)
    lifetimes = policy.lifetimes()
    wanted = wanted_certs(plan)
    for name, why in pki.reissues(kept, wanted, CAS, lifetimes).items():
        log.info("certificate %s: issuing it again (%s)", name, why)
    certs = pki.ensure(kept, wanted, CAS, lifetimes)
    certs["service-account"] = kept.get("service-account") or pki.service_account_key()
    certs["encryption"] = kept.get("encryption") or pki.encryption_key()
    return certs


def converge(inputs: BootstrapInputs, previous: BootstrapState | None = None,
             previous_inputs: BootstrapInputs | None = None) -> BootstrapState:
    previous = previous or BootstrapState()
    names = [n.name for n in inputs.nodes]
    cidrs = allocate_pod_cidrs(inputs.pod_cidr, names, previous.pod_cidrs)
    plan = Plan(inputs.cluster, inputs.version, inputs.pod_cidr, inputs.service_cidr, tuple(
        PlanNode(n.name, n.role, n.ip, cidrs[n.name], dict(n.labels), tuple(n.taints)) for n in inputs.nodes),
        endpoint=inputs.endpoint)
    addon_config = AddonConfig(
        images=addon_images(inputs.version, inputs.addons.image_repository),
        coredns_replicas=inputs.addons.coredns_replicas or dns_replicas(len(inputs.nodes)),
        metrics_server=inputs.addons.metrics_server, network_policy=inputs.addons.network_policy)
    images = preload.preloaded(inputs.binaries, addon_config.images, inputs.addons.preload)
    nodes = sessions(inputs)
    leaving = sessions(inputs, leaving_nodes(inputs, previous_inputs))
    try:
        certs = cluster_pki(previous, next(n for n in nodes if n.role == CONTROL_PLANE), plan, inputs.pki_policy)
        desired = Desired(plan, certs, local_binaries(inputs.binaries), images, addon_config)
        timings = bootstrap(nodes, desired, {n.name: n.memory_mb for n in inputs.nodes},
                            inputs.snapshots, existed=bool(previous.pki))
        first = next(n for n in nodes if n.role == CONTROL_PLANE)
        if leaving:
            take_by_policy(first.session, inputs.snapshots, f"before removing {', '.join(n.name for n in leaving)}")
        remove_nodes(first, leaving)
        report = node_report(first)
        log.info("%s", timing_summary(timings))
        for node in nodes:
            log.info("%s: converged (%d change%s, %d connection%s)", node.name, node.session.mutations,
                     "" if node.session.mutations == 1 else "s", node.session.connections,
                     "" if node.session.connections == 1 else "s")
    finally:
        for node in nodes:
            node.session.close()
    return BootstrapState(
        kubeconfig=pki.kubeconfig(plan.cluster, plan.api_server, certs["cluster-ca"].cert, ADMIN_USER,
                                  certs["admin"]),
        api_server=plan.api_server, pod_cidrs=cidrs,
        pki={k: CertPair(v.cert, v.key) for k, v in certs.items()}, node_status=tuple(report))
