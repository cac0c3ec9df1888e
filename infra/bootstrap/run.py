"""Bootstrap: turn reachable VMs into a Kubernetes cluster, phase by phase.

Each phase reads facts first and does only what is missing, so a second run
over a converged cluster runs no mutating command (Session.mutations counts).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shlex
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from infra import pki
from infra.errors import VmkubeError
from infra.files import FileSpec, ensure_files
from infra.phases import Node, run_phases
from infra.preflight import BOOTSTRAPPED_MARKER, Preflight

from . import images, render
from .plan import Plan

log = logging.getLogger("vmkube.bootstrap")
CONTROL_PLANE_BINARIES = ("etcd", "etcdctl", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                          "kubectl", "kubelet", "kube-proxy")
WORKER_BINARIES = ("kubelet", "kube-proxy")
READY_TIMEOUT = 900.0
ALL_ROLES = ("control-plane", "worker")
KUBECTL = f"{render.BIN_DIR}/kubectl --kubeconfig /etc/kubernetes/admin.conf"
# Polled through `kubectl get --raw`: no API discovery first, which under QEMU TCG made
# each `kubectl get nodes` take 10-15 s against 4 s for a raw read.
NODES_PATH = "/api/v1/nodes"
DEFAULT_ACCOUNT_PATH = "/api/v1/namespaces/default/serviceaccounts/default"

# Which changed paths make which service restart.
UNIT_INPUTS = {
    "vmkube-routes": ("/etc/systemd/system/vmkube-routes.service",),
    "containerd": ("/etc/containerd/",),
    "etcd": ("/etc/systemd/system/etcd.service", "/etc/kubernetes/pki/etcd/", "/usr/local/bin/etcd"),
    "kube-apiserver": ("/etc/systemd/system/kube-apiserver.service", "/etc/kubernetes/pki/",
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


@dataclass
class Inputs:
    plan: Plan
    certs: Mapping[str, pki.CertKey]
    binaries: Mapping[str, Path]  # binary name -> local file
    images: Mapping[str, bytes]  # image reference -> docker-archive, preloaded on every node
    changed: dict[str, list[str]] = field(default_factory=dict)  # node -> paths changed this run
    _binary_files: dict[str, FileSpec] = field(default_factory=dict)

    def binary(self, name: str) -> FileSpec:
        """Read and hashed once per run, shared by every node."""
        if name not in self._binary_files:
            self._binary_files[name] = FileSpec(f"{render.BIN_DIR}/{name}", self.binaries[name].read_bytes(), 0o755)
        return self._binary_files[name]

    def files_for(self, node: Node) -> list[FileSpec]:
        plan_node = self.plan.node(node.name)
        files = render.node_files(self.plan, plan_node, self.certs, self.images)
        if node.role == "control-plane":
            files = render.control_plane_files(self.plan, plan_node, self.certs) + files
        else:
            files = render.worker_files(self.plan) + files
        names = CONTROL_PLANE_BINARIES if node.role == "control-plane" else WORKER_BINARIES
        unique = {f.path: f for f in files + [self.binary(b) for b in names]}
        return list(unique.values())


class BootstrapError(VmkubeError):
    pass


@dataclass
class Configure:
    inputs: Inputs
    title: str = "install binaries, certificates and configuration"

    def applies(self, node: Node) -> bool:
        return True

    def run(self, node: Node) -> None:
        changed = ensure_files(node.session, self.inputs.files_for(node))
        self.inputs.changed[node.name] = changed
        if changed:
            log.info("%s: %d file(s) changed", node.name, len(changed))
        if any(p.startswith(("/etc/sysctl.d/", "/etc/modules-load.d/")) for p in changed):
            node.session.run("modprobe br_netfilter && modprobe overlay && sysctl --system >/dev/null",
                             sudo=True, change=True)


@dataclass
class Images:
    inputs: Inputs
    title: str = "import preloaded images (pod sandbox, demo app)"

    def applies(self, node: Node) -> bool:
        return True

    def run(self, node: Node) -> None:
        listed = set(node.session.run("ctr -n k8s.io images ls -q 2>/dev/null || true", sudo=True).stdout.split())
        changed = set(self.inputs.changed.get(node.name, []))
        wanted = [ref for ref in sorted(self.inputs.images)
                  if ref not in listed or images.tar_path(ref) in changed]
        if wanted:
            node.session.run(["systemctl", "start", "containerd"], sudo=True, change=True)
        for ref in wanted:
            log.info("%s: importing %s", node.name, ref)
            node.session.run(["ctr", "-n", "k8s.io", "images", "import", images.tar_path(ref)],
                             sudo=True, change=True)


@dataclass
class Services:
    inputs: Inputs
    units: tuple[str, ...]
    roles: tuple[str, ...]
    title: str = "start services"
    # Restarting every control plane's components at once would take etcd's quorum and
    # all API servers away together, so with several they restart one node at a time,
    # each waiting until its node serves again. First starts stay parallel: etcd members
    # wait for each other.
    rolling: bool = False
    _turn: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def applies(self, node: Node) -> bool:
        return node.role in self.roles

    def run(self, node: Node) -> None:
        units = self.units
        states = node.session.run(
            "for u in " + " ".join(units) + "; do printf '%s %s %s\\n' \"$u\" "
            "\"$(systemctl is-active \"$u\" 2>/dev/null)\" \"$(systemctl is-enabled \"$u\" 2>/dev/null)\"; done",
            sudo=True).stdout
        facts = {line.split()[0]: line.split()[1:] for line in states.splitlines() if line.strip()}
        changed = self.inputs.changed.get(node.name, [])
        if any(p.startswith("/etc/systemd/system/") for p in changed):
            node.session.run(["systemctl", "daemon-reload"], sudo=True, change=True)
        restart = []
        for unit in units:
            active, enabled = (facts.get(unit, ["unknown", "unknown"]) + ["unknown"])[:2]
            touched = any(p.startswith(prefix) for p in changed for prefix in UNIT_INPUTS[unit])
            if enabled != "enabled":
                node.session.run(["systemctl", "enable", unit], sudo=True, change=True)
            if active != "active":
                log.info("%s: starting %s", node.name, unit)
                node.session.run(["systemctl", "restart", unit], sudo=True, change=True)
            elif touched:
                restart.append(unit)
        if not restart:
            return
        with self._turn if self.rolling else contextlib.nullcontext():
            for unit in restart:
                log.info("%s: restarting %s (its configuration changed)", node.name, unit)
                node.session.run(["systemctl", "restart", unit], sudo=True, change=True)
            if self.rolling:
                log.info("%s: waiting for this control plane to serve before the next one restarts", node.name)
                etcd_healthy(node)
                ApiReady().run(node)


def kubectl(node: Node, args: str, check: bool = True, timeout: float = 120, change: bool = False):
    return node.session.run(f"{KUBECTL} {args}", sudo=True, check=check, timeout=timeout, change=change)


def _poll(what: str, attempt) -> None:
    """Runs attempt() every 5 s until its result is ok; fails naming what did not get there."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        result = attempt()
        if result.ok:
            return
        if time.monotonic() > deadline:
            raise BootstrapError(f"{what} did not become ready within {READY_TIMEOUT:.0f}s: "
                                 f"{(result.stderr or result.stdout).strip()[-300:]}")
        time.sleep(5)


def etcd_healthy(node: Node) -> None:
    p = render.PKI_DIR
    _poll("etcd", lambda: node.session.run(
        [f"{render.BIN_DIR}/etcdctl", "--endpoints=https://127.0.0.1:2379", f"--cacert={p}/etcd/ca.crt",
         f"--cert={p}/apiserver-etcd-client.crt", f"--key={p}/apiserver-etcd-client.key",
         "--command-timeout=5s", "endpoint", "health"], sudo=True, check=False))


@dataclass
class ApiReady:
    title: str = "wait for the API server"

    def applies(self, node: Node) -> bool:
        return node.role == "control-plane"

    def run(self, node: Node) -> None:
        # kubectl exits 0 with a body other than "ok" while checks still fail.
        _poll("the API server", lambda: _readyz(node))


def _readyz(node: Node):
    result = kubectl(node, "get --raw /readyz", check=False)
    return result if result.stdout.strip() == "ok" else dataclasses.replace(result, code=result.code or 1)


@dataclass
class NodesReady:
    plan: Plan
    title: str = "wait for every node to be Ready"

    def applies(self, node: Node) -> bool:
        return node == self.first

    first: Node | None = None

    def run(self, node: Node) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        wanted = {n.name for n in self.plan.nodes}
        while True:
            result = kubectl(node, f"get --raw {NODES_PATH}", check=False)
            ready: dict[str, dict] = {}
            if result.ok:
                for item in json.loads(result.stdout)["items"]:
                    conds = {c["type"]: c["status"] for c in item["status"].get("conditions", [])}
                    if conds.get("Ready") == "True":
                        ready[item["metadata"]["name"]] = item
            # Pods need the namespace's default service account, made by the controller manager.
            accounts = kubectl(node, f"get --raw {DEFAULT_ACCOUNT_PATH}", check=False)
            if wanted <= set(ready) and accounts.ok:
                self._label(node, ready)
                return
            if time.monotonic() > deadline:
                missing = ", ".join(sorted(wanted - set(ready))) or "none"
                raise BootstrapError(f"cluster not ready within {READY_TIMEOUT:.0f}s: nodes not Ready: {missing}; "
                                     f"default service account: {'yes' if accounts.ok else 'missing'}")
            time.sleep(5)

    def _label(self, node: Node, items: dict[str, dict]) -> None:
        """Labels and the control-plane role that kubelets may not set themselves (NodeRestriction)."""
        for n in self.plan.nodes:
            want = {k: v for k, v in n.labels.items() if render.restricted_label(k)}
            if n.role == "control-plane":
                want["node-role.kubernetes.io/control-plane"] = ""
            have = items[n.name]["metadata"].get("labels", {})
            missing = {k: v for k, v in want.items() if have.get(k) != v}
            if missing:
                pairs = " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(missing.items()))
                kubectl(node, f"label node {shlex.quote(n.name)} --overwrite {pairs}", change=True)


@dataclass
class Mark:
    title: str = "mark nodes bootstrapped"

    def applies(self, node: Node) -> bool:
        return True

    def run(self, node: Node) -> None:
        if not node.session.run(["test", "-e", BOOTSTRAPPED_MARKER], check=False).ok:
            node.session.run(["sh", "-c", f"mkdir -p /var/lib/vmkube && touch {BOOTSTRAPPED_MARKER}"],
                             sudo=True, change=True)


def node_report(control_plane: Node) -> list[dict]:
    """What the API server says about each node: readiness, kubelet version, address."""
    items = json.loads(kubectl(control_plane, f"get --raw {NODES_PATH}").stdout)["items"]
    out = []
    for item in items:
        conds = {c["type"]: c["status"] for c in item["status"].get("conditions", [])}
        addresses = {a["type"]: a["address"] for a in item["status"].get("addresses", [])}
        out.append({"name": item["metadata"]["name"], "ready": conds.get("Ready") == "True",
                    "kubeletVersion": item["status"]["nodeInfo"]["kubeletVersion"],
                    "ip": addresses.get("InternalIP", "")})
    return sorted(out, key=lambda n: n["name"])


def bootstrap(nodes: list[Node], inputs: Inputs, memory_mb: Mapping[str, int]) -> None:
    cps = [n for n in nodes if n.role == "control-plane"]
    ready = NodesReady(inputs.plan, first=cps[0])
    run_phases(nodes, [
        Preflight(memory_mb=dict(memory_mb)),
        Configure(inputs),
        Images(inputs),
        Services(inputs, ("vmkube-routes", "containerd"), ALL_ROLES, title="start node services"),
        Services(inputs, render.CONTROL_PLANE_UNITS, ("control-plane",), title="start the control plane",
                 rolling=len(cps) > 1),
        ApiReady(),
        Services(inputs, ("haproxy",), ("worker",), title="start the API load balancer on workers"),
        Services(inputs, ("kubelet", "kube-proxy"), ALL_ROLES, title="start kubelets"),
        ready,
        Mark(),
    ])
