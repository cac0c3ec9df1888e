"""What the cluster should look like: nodes with addresses and pod ranges,
the API endpoint, and the certificates each component needs."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Mapping

from vmkube import pki
from vmkube.roles import CONTROL_PLANE

CLUSTER_DOMAIN = "cluster.local"
API_PORT = 6443
CAS = ("cluster-ca", "etcd-ca", "front-proxy-ca")
ADMIN_USER = "vmkube-admin"
ADMIN_GROUP = "vmkube:cluster-admins"


@dataclass(frozen=True)
class PlanNode:
    name: str
    role: str
    ip: str
    pod_cidr: str
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    cluster: str
    version: str
    pod_cidr: str
    service_cidr: str
    nodes: tuple[PlanNode, ...]
    endpoint: str = ""  # load balancer or VIP the operator reaches the API through; "" = first control plane

    @property
    def control_planes(self) -> list[PlanNode]:
        return [n for n in self.nodes if n.role == CONTROL_PLANE]

    @property
    def api_server(self) -> str:
        return f"https://{self.endpoint or self.control_planes[0].ip}:{API_PORT}"

    @property
    def service_ip(self) -> str:
        return str(next(ipaddress.ip_network(self.service_cidr).hosts()))

    @property
    def dns_ip(self) -> str:
        """The kube-dns Service: the tenth address of the service range, as kubeadm puts it."""
        return str(ipaddress.ip_network(self.service_cidr)[10])

    def node(self, name: str) -> PlanNode:
        return next(n for n in self.nodes if n.name == name)


def allocate_pod_cidrs(cluster_cidr: str, names: list[str], kept: Mapping[str, str]) -> dict[str, str]:
    """A /24 per node: kept ones stay, new ones get the lowest free range."""
    blocks = ipaddress.ip_network(cluster_cidr).subnets(new_prefix=24)
    out = {n: kept[n] for n in names if n in kept}
    used = set(out.values())
    for name in names:
        if name in out:
            continue
        block = next(str(b) for b in blocks if str(b) not in used)
        out[name] = block
        used.add(block)
    return out


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def wanted_certs(plan: Plan) -> dict[str, tuple[str, pki.LeafSpec]]:
    cps = plan.control_planes
    api_ips = [n.ip for n in cps]
    api_names = [n.name for n in cps]
    if plan.endpoint:
        (api_ips if _is_ip(plan.endpoint) else api_names).append(plan.endpoint)
    want: dict[str, tuple[str, pki.LeafSpec]] = {
        "apiserver": ("cluster-ca", pki.apiserver_names(CLUSTER_DOMAIN, plan.service_ip, api_ips, api_names)),
        "apiserver-kubelet-client": ("cluster-ca", pki.LeafSpec("kube-apiserver-kubelet-client",
                                                                org="system:masters", client=True)),
        "apiserver-etcd-client": ("etcd-ca", pki.LeafSpec("kube-apiserver-etcd-client", client=True)),
        "front-proxy-client": ("front-proxy-ca", pki.LeafSpec("front-proxy-client", client=True)),
        "controller-manager": ("cluster-ca", pki.LeafSpec("system:kube-controller-manager", client=True)),
        "scheduler": ("cluster-ca", pki.LeafSpec("system:kube-scheduler", client=True)),
        "kube-proxy": ("cluster-ca", pki.LeafSpec("system:kube-proxy", client=True)),
        # The operator's credentials: a group bound to cluster-admin (kubeadm's way since 1.29),
        # so deleting that binding revokes them. system:masters, which nothing can revoke,
        # is only in super-admin.conf on the control planes, for vmkube's own bootstrap.
        "admin": ("cluster-ca", pki.LeafSpec(ADMIN_USER, org=ADMIN_GROUP, client=True)),
        "super-admin": ("cluster-ca", pki.LeafSpec("vmkube-super-admin", org="system:masters", client=True)),
        # metrics-server's serving certificate: the aggregated metrics API is verified, not trusted blindly.
        "metrics-server": ("cluster-ca", pki.LeafSpec("metrics-server.kube-system.svc", server=True, dns=(
            "metrics-server.kube-system.svc", f"metrics-server.kube-system.svc.{CLUSTER_DOMAIN}"))),
    }
    for n in cps:
        names = (n.name, "localhost")
        ips = (n.ip, "127.0.0.1")
        want[f"etcd-server-{n.name}"] = ("etcd-ca", pki.LeafSpec(n.name, client=True, server=True, dns=names, ips=ips))
        want[f"etcd-peer-{n.name}"] = ("etcd-ca", pki.LeafSpec(n.name, client=True, server=True, dns=names, ips=ips))
    for n in plan.nodes:
        want[f"kubelet-{n.name}"] = ("cluster-ca", pki.LeafSpec(f"system:node:{n.name}", org="system:nodes",
                                                                client=True, server=True, dns=(n.name,),
                                                                ips=(n.ip,)))
    return want
