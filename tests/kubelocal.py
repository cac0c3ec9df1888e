"""Local control planes for the kube fixtures, as data: vmkube's plan for one or
three control planes on loopback addresses, each component's command line, its files.

Command lines come from vmkube's own builders (vmkube/bootstrap/render.py) with a
Layout that puts the files in a work directory; only what several processes on one
host cannot share is changed: listen addresses and ports, and etcd's disk flushes.
Certificates come from vmkube's PKI code.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from vmkube import pki
from vmkube.bootstrap import render
from vmkube.bootstrap.plan import API_PORT, CAS, Plan, PlanNode, wanted_certs

ONE = Plan("vmkube-local", "", "10.244.0.0/16", "10.96.0.0/12",
           (PlanNode("cp-1", "control-plane", "127.0.0.1", "10.244.0.0/24"),))
# Three control planes each on a loopback address of its own, so all of them serve
# the ports a node uses, as the plan, the certificates and haproxy expect.
THREE = Plan("vmkube-ha", "", "10.244.0.0/16", "10.96.0.0/12", tuple(
    PlanNode(f"cp-{i}", "control-plane", f"127.0.0.{10 + i}", f"10.244.{i}.0/24") for i in (1, 2, 3)))
FAKE_NODES = ("kwok-node-1", "kwok-node-2")
# kwokctl's own selector: only nodes carrying this annotation are played by kwok.
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
# kwok renews the fake nodes' leases as often as a kubelet does for this duration.
NODE_LEASE_SECONDS = 40
# Which toolchain directory holds each file the control plane needs.
BINARIES = {"etcd": "etcd", "kube-apiserver": "kubernetes", "kube-controller-manager": "kubernetes",
            "kube-scheduler": "kubernetes", "kubectl": "kubernetes", "kwok": "kwok", "stages.yaml": "kwok"}
PER_NODE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


@dataclass(frozen=True)
class Ports:
    etcd: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int

    @classmethod
    def free(cls) -> Ports:
        socks = [socket.socket() for _ in fields(cls)]
        try:
            for s in socks:  # all held open at once, so no two are the same
                s.bind(("127.0.0.1", 0))
            return cls(*(s.getsockname()[1] for s in socks))
        finally:
            for s in socks:
                s.close()

    @classmethod
    def node(cls) -> Ports:
        """The ports of a node: for control planes on addresses of their own."""
        return cls(2379, 2380, API_PORT, 10257, 10259)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_dir(work: Path, node: PlanNode) -> Path:
    return work / node.name


def layout(work: Path, node: PlanNode, ports: Ports) -> render.Layout:
    d = node_dir(work, node)
    return render.Layout(pki=str(d / "pki"), conf=str(d), etcd_data=str(d / "etcd"), etcd_port=ports.etcd,
                         etcd_peer_port=ports.etcd_peer, api_port=ports.apiserver,
                         audit_log=str(d / "audit" / "audit.log"))


def with_flags(args: list[str], binary: Path, **flags: object) -> list[str]:
    """args with its binary replaced and each --flag set to the value given (added when absent)."""
    wanted = {f"--{name.replace('_', '-')}": str(value) for name, value in flags.items()}
    kept = [a for a in args[1:] if a.split("=", 1)[0] not in wanted]
    return [str(binary), *kept, *(f"{k}={v}" for k, v in wanted.items())]


def commands(bins: dict[str, Path], work: Path, plan: Plan, ports: Ports) -> dict[str, list[str]]:
    """Each process's command line, named "<node>/<component>", and kwok's."""
    out: dict[str, list[str]] = {}
    for node in plan.control_planes:
        at = layout(work, node, ports)
        # The data is thrown away with the test: a disk flush per write only slows it down.
        out[f"{node.name}/etcd"] = with_flags(render.etcd_args(plan, node, at), bins["etcd"], unsafe_no_fsync=True)
        out[f"{node.name}/kube-apiserver"] = with_flags(render.apiserver_args(plan, node, at),
                                                        bins["kube-apiserver"], bind_address=node.ip)
        out[f"{node.name}/kube-controller-manager"] = with_flags(
            render.controller_manager_args(plan, at), bins["kube-controller-manager"], bind_address=node.ip,
            secure_port=ports.controller_manager)
        out[f"{node.name}/kube-scheduler"] = with_flags(render.scheduler_args(plan, at), bins["kube-scheduler"],
                                                        bind_address=node.ip, secure_port=ports.scheduler)
    out["kwok"] = [str(bins["kwok"]), f"--kubeconfig={work / 'kwok.conf'}", f"--config={bins['stages.yaml']}",
                   f"--manage-nodes-with-annotation-selector={'='.join(KWOK_ANNOTATION)}",
                   f"--cidr={plan.pod_cidr}", f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}"]
    return out


def _write(path: Path, content: str | bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    path.chmod(mode)


def certificates(plan: Plan, lifetimes: pki.Lifetimes = pki.Lifetimes()) -> dict[str, pki.CertKey]:
    """Everything vmkube issues for the plan's cluster, fresh (leaves lasting ``lifetimes.leaf``)."""
    certs = pki.ensure({}, wanted_certs(plan), CAS, lifetimes)
    certs["service-account"] = pki.service_account_key()
    certs["encryption"] = pki.encryption_key()
    return certs


def write_files(work: Path, plan: Plan, ports: Ports, server: str,
                certs: dict[str, pki.CertKey] | None = None) -> dict[str, pki.CertKey]:
    """The PKI tree vmkube writes on each control plane, the kubeconfigs of its
    controller manager and scheduler (to its own API server, as on a node), and
    admin and kwok kubeconfigs to `server`, with the admin's key pair for tests.
    ``certs`` defaults to a fresh set; the set written is returned."""
    certs = certs or certificates(plan)
    for node in plan.control_planes:
        write_node_files(work, plan, node, ports, certs)
    write_client_files(work, plan, server, certs)
    return certs


def write_node_files(work: Path, plan: Plan, node: PlanNode, ports: Ports, certs: dict[str, pki.CertKey]) -> None:
    """One control plane's files, as vmkube renders them, under its work directory."""
    d = node_dir(work, node)
    ca = certs["cluster-ca"].cert
    for f in render.control_plane_files(plan, node, certs):
        if f.path.startswith(render.PKI_DIR + "/"):
            _write(d / "pki" / f.path[len(render.PKI_DIR) + 1:], f.content, f.mode)
        elif f.path.rsplit("/", 1)[-1] in (render.ENCRYPTION_CONFIG, render.AUDIT_POLICY):
            _write(d / f.path.rsplit("/", 1)[-1], f.content, f.mode)
    own = f"https://{node.ip}:{ports.apiserver}"
    for name, user in (("controller-manager", "system:kube-controller-manager"),
                       ("scheduler", "system:kube-scheduler")):
        _write(d / f"{name}.conf", pki.kubeconfig(plan.cluster, own, ca, user, certs[name]))


def write_client_files(work: Path, plan: Plan, server: str, certs: dict[str, pki.CertKey]) -> None:
    ca = certs["cluster-ca"].cert
    _write(work / "ca.crt", ca)
    _write(work / "etcd-ca.crt", certs["etcd-ca"].cert)
    for name in ("super-admin", "apiserver-etcd-client"):
        _write(work / f"{name}.crt", certs[name].cert)
        _write(work / f"{name}.key", certs[name].key)
    # The tests act as vmkube's bootstrap does: with the super-admin (the operator's admin
    # group has its rights only once the bootstrap has bound it).
    admin = pki.kubeconfig(plan.cluster, server, ca, "vmkube-super-admin", certs["super-admin"])
    _write(work / "admin.conf", admin)
    _write(work / "kwok.conf", admin)


def fake_nodes() -> str:
    return yaml.safe_dump_all([{
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": dict([KWOK_ANNOTATION]),
                     "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                "kubernetes.io/arch": "amd64", "type": "kwok"}},
    } for name in FAKE_NODES])
