"""The local control plane of the kube fixture, as data: vmkube's plan for one
control plane on loopback, each component's command line, its files.

Certificates come from vmkube's own PKI code, and each component gets the flags
vmkube gives it on a control plane (infra/bootstrap/render.py), with files in a
work directory and ports picked at run time.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from infra import pki
from infra.bootstrap.plan import CAS, CLUSTER_DOMAIN, Plan, PlanNode, wanted_certs
from infra.bootstrap.render import PKI_DIR, control_plane_files

NODE = PlanNode("cp-1", "control-plane", "127.0.0.1", "10.244.0.0/24")
PLAN = Plan("vmkube-local", "", "10.244.0.0/16", "10.96.0.0/12", (NODE,))
FAKE_NODES = ("kwok-node-1", "kwok-node-2")
# kwokctl's own selector: only nodes carrying this annotation are played by kwok.
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
# Which toolchain directory holds each file the control plane needs.
BINARIES = {"etcd": "etcd", "kube-apiserver": "kubernetes", "kube-controller-manager": "kubernetes",
            "kube-scheduler": "kubernetes", "kubectl": "kubernetes", "kwok": "kwok", "stages.yaml": "kwok"}
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


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


def commands(bins: dict[str, Path], work: Path, ports: Ports) -> dict[str, list[str]]:
    """Each component's command line: vmkube's flags, local paths and ports."""
    p = work / "pki"
    client, peer = f"https://127.0.0.1:{ports.etcd}", f"https://127.0.0.1:{ports.etcd_peer}"
    etcd = [f"--name={NODE.name}", f"--data-dir={work / 'etcd'}", f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}", f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}", f"--initial-cluster={NODE.name}={peer}",
            "--initial-cluster-state=new", "--initial-cluster-token=vmkube",
            f"--cert-file={p}/etcd/server.crt", f"--key-file={p}/etcd/server.key",
            f"--trusted-ca-file={p}/etcd/ca.crt", "--client-cert-auth=true",
            f"--peer-cert-file={p}/etcd/peer.crt", f"--peer-key-file={p}/etcd/peer.key",
            f"--peer-trusted-ca-file={p}/etcd/ca.crt", "--peer-client-cert-auth=true",
            # The data is thrown away with the test: a disk flush per write only slows it down.
            "--unsafe-no-fsync"]
    apiserver = ["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--allow-privileged=true",
                 "--authorization-mode=Node,RBAC", f"--client-ca-file={p}/ca.crt",
                 "--enable-admission-plugins=NodeRestriction", f"--etcd-servers={client}",
                 f"--etcd-cafile={p}/etcd/ca.crt", f"--etcd-certfile={p}/apiserver-etcd-client.crt",
                 f"--etcd-keyfile={p}/apiserver-etcd-client.key",
                 f"--kubelet-client-certificate={p}/apiserver-kubelet-client.crt",
                 f"--kubelet-client-key={p}/apiserver-kubelet-client.key",
                 "--kubelet-preferred-address-types=InternalIP,Hostname",
                 f"--proxy-client-cert-file={p}/front-proxy-client.crt",
                 f"--proxy-client-key-file={p}/front-proxy-client.key",
                 f"--requestheader-client-ca-file={p}/front-proxy-ca.crt",
                 "--requestheader-allowed-names=front-proxy-client",
                 "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                 "--requestheader-group-headers=X-Remote-Group", "--requestheader-username-headers=X-Remote-User",
                 f"--secure-port={ports.apiserver}",
                 f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
                 f"--service-account-key-file={p}/sa.pub", f"--service-account-signing-key-file={p}/sa.key",
                 f"--service-cluster-ip-range={PLAN.service_cidr}",
                 f"--tls-cert-file={p}/apiserver.crt", f"--tls-private-key-file={p}/apiserver.key"]
    cm_conf = work / "controller-manager.conf"
    cm = [f"--kubeconfig={cm_conf}", f"--authentication-kubeconfig={cm_conf}",
          f"--authorization-kubeconfig={cm_conf}", "--bind-address=127.0.0.1",
          f"--secure-port={ports.controller_manager}", f"--client-ca-file={p}/ca.crt",
          f"--cluster-cidr={PLAN.pod_cidr}", "--allocate-node-cidrs=false",
          f"--cluster-signing-cert-file={p}/ca.crt", f"--cluster-signing-key-file={p}/ca.key",
          f"--requestheader-client-ca-file={p}/front-proxy-ca.crt", f"--root-ca-file={p}/ca.crt",
          f"--service-account-private-key-file={p}/sa.key", f"--service-cluster-ip-range={PLAN.service_cidr}",
          "--use-service-account-credentials=true", "--leader-elect=false"]
    sched_conf = work / "scheduler.conf"
    scheduler = [f"--kubeconfig={sched_conf}", f"--authentication-kubeconfig={sched_conf}",
                 f"--authorization-kubeconfig={sched_conf}", "--bind-address=127.0.0.1",
                 f"--secure-port={ports.scheduler}", "--leader-elect=false"]
    kwok = [f"--kubeconfig={work / 'admin.conf'}", f"--config={bins['stages.yaml']}",
            f"--manage-nodes-with-annotation-selector={'='.join(KWOK_ANNOTATION)}", f"--cidr={PLAN.pod_cidr}"]
    args = {"etcd": etcd, "kube-apiserver": apiserver, "kube-controller-manager": cm,
            "kube-scheduler": scheduler, "kwok": kwok}
    return {name: [str(bins[name]), *rest] for name, rest in args.items()}


def _write(path: Path, content: str | bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    path.chmod(mode)


def certificates() -> dict[str, pki.CertKey]:
    """Everything vmkube issues for a one-control-plane cluster, fresh."""
    certs = pki.ensure({}, wanted_certs(PLAN), CAS)
    certs["service-account"] = pki.service_account_key()
    return certs


def write_files(work: Path, server: str) -> None:
    certs = certificates()
    # The same PKI tree vmkube writes on a control plane, under work/pki.
    for f in control_plane_files(PLAN, NODE, certs):
        if f.path.startswith(PKI_DIR + "/"):
            _write(work / "pki" / f.path[len(PKI_DIR) + 1:], f.content, f.mode)
    _write(work / "pki" / "admin.crt", certs["admin"].cert)
    _write(work / "pki" / "admin.key", certs["admin"].key)
    for name, user in (("controller-manager", "system:kube-controller-manager"),
                       ("scheduler", "system:kube-scheduler"), ("admin", "vmkube-admin")):
        _write(work / f"{name}.conf", pki.kubeconfig(PLAN.cluster, server, certs["cluster-ca"].cert, user, certs[name]))


def fake_nodes() -> str:
    return yaml.safe_dump_all([{
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": dict([KWOK_ANNOTATION]),
                     "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                "kubernetes.io/arch": "amd64", "type": "kwok"}},
    } for name in FAKE_NODES])
