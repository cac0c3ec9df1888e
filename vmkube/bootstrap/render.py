"""Every file a node needs, rendered as pure data from the plan and the PKI."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Mapping

import yaml

from vmkube import pki
from vmkube.nodes.files import FileSpec

from vmkube.bootstrap.preload import tar_path
from vmkube.bootstrap.plan import ADMIN_USER, API_PORT, CLUSTER_DOMAIN, Plan, PlanNode

PKI_DIR = "/etc/kubernetes/pki"
BIN_DIR = "/usr/local/bin"
CONTROL_PLANE_UNITS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
NODE_UNITS = ("vmkube-routes", "containerd", "kubelet", "kube-proxy")
# Kubelets and kube-proxy reach the API here on every node: the local API server on a
# control plane, a local haproxy over all API servers on a worker (kubespray's way), so
# a worker keeps working while any one control plane is down.
LOCAL_API = f"https://127.0.0.1:{API_PORT}"
HAPROXY_CONFIG = "/etc/haproxy/haproxy.cfg"
DEFAULT_SANDBOX_IMAGE = "registry.k8s.io/pause:3.10"


ENCRYPTION_CONFIG = "encryption-config.yaml"
AUDIT_POLICY = "audit-policy.yaml"
SUPER_ADMIN_CONF = "/etc/kubernetes/super-admin.conf"
# What the API server records (CIS 1.2.16-19): who did what to which object, never
# request or response bodies (those would put Secrets in the log); health probes and
# the event stream left out. Rotated by the API server itself.
AUDIT_POLICY_DOC = {
    "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "nonResourceURLs": ["/healthz*", "/readyz*", "/livez*", "/version", "/openapi*"]},
        {"level": "None", "resources": [{"group": "", "resources": ["events"]},
                                        {"group": "coordination.k8s.io", "resources": ["leases"]}]},
        {"level": "None", "users": ["system:kube-proxy"], "verbs": ["watch"]},
        {"level": "Metadata"},
    ],
}


# CIS (4.1.x, 1.1.x): what vmkube writes under /etc/kubernetes, /var/lib/kubelet,
# /var/lib/kube-proxy and its unit files is readable by root only; binaries are 0755.
def _text(path: str, text: str, mode: int = 0o600) -> FileSpec:
    return FileSpec(path, text.encode(), mode)


def encryption_config(key: pki.CertKey) -> str:
    """Secrets encrypted at rest with secretbox under the cluster's key; identity last,
    so Secrets written before encryption was on can still be read (and are rewritten)."""
    return yaml.safe_dump({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"], "providers": [
            {"secretbox": {"keys": [{"name": key.cert, "secret": key.key}]}}, {"identity": {}}]}],
    }, sort_keys=False)


def _unit(description: str, exec_start: list[str], after: str = "network-online.target",
          kind: str = "simple") -> str:
    command = " \\\n  ".join(exec_start)
    restart = "Restart=always\nRestartSec=5\n" if kind == "simple" else "RemainAfterExit=yes\n"
    return (f"[Unit]\nDescription={description} (vmkube)\nWants=network-online.target\nAfter={after}\n\n"
            f"[Service]\nType={kind}\nExecStart={command}\n{restart}LimitNOFILE=1048576\n\n"
            "[Install]\nWantedBy=multi-user.target\n")


def _pair(certs: Mapping[str, pki.CertKey], name: str, path: str) -> list[FileSpec]:
    return [_text(f"{path}.crt", certs[name].cert), _text(f"{path}.key", certs[name].key, 0o600)]


def _kubeconfig(plan: Plan, certs: Mapping[str, pki.CertKey], name: str, user: str, server: str) -> str:
    return pki.kubeconfig(plan.cluster, server, certs["cluster-ca"].cert, user, certs[name])


@dataclass(frozen=True)
class Layout:
    """Where a control plane keeps its files and which ports it serves: a node's own by
    default. The tests' local control planes put several on loopback, in work directories."""
    pki: str = PKI_DIR
    conf: str = "/etc/kubernetes"
    etcd_data: str = "/var/lib/etcd"
    etcd_port: int = 2379
    etcd_peer_port: int = 2380
    api_port: int = API_PORT
    audit_log: str = "/var/log/kubernetes/audit/audit.log"


NODE_LAYOUT = Layout()


def etcdctl_args(at: Layout = NODE_LAYOUT, etcdctl: str = f"{BIN_DIR}/etcdctl") -> list[str]:
    """etcdctl on a control plane, to its own member, as the API server's etcd client."""
    p = at.pki
    return [etcdctl, f"--endpoints=https://127.0.0.1:{at.etcd_port}", f"--cacert={p}/etcd/ca.crt",
            f"--cert={p}/apiserver-etcd-client.crt", f"--key={p}/apiserver-etcd-client.key"]


def etcd_args(plan: Plan, node: PlanNode, at: Layout = NODE_LAYOUT) -> list[str]:
    p = at.pki
    # Local clients (the API server) use loopback; a node whose address is loopback already is.
    hosts = [node.ip] if ipaddress.ip_address(node.ip).is_loopback else ["127.0.0.1", node.ip]
    clients = ",".join(f"https://{h}:{at.etcd_port}" for h in hosts)
    peer = f"https://{node.ip}:{at.etcd_peer_port}"
    peers = ",".join(f"{n.name}=https://{n.ip}:{at.etcd_peer_port}" for n in plan.control_planes)
    return [f"{BIN_DIR}/etcd", f"--name={node.name}", f"--data-dir={at.etcd_data}",
            f"--listen-client-urls={clients}", f"--advertise-client-urls=https://{node.ip}:{at.etcd_port}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}", f"--initial-cluster={peers}",
            "--initial-cluster-state=new", "--initial-cluster-token=vmkube",
            f"--cert-file={p}/etcd/server.crt", f"--key-file={p}/etcd/server.key",
            f"--trusted-ca-file={p}/etcd/ca.crt", "--client-cert-auth=true",
            f"--peer-cert-file={p}/etcd/peer.crt", f"--peer-key-file={p}/etcd/peer.key",
            f"--peer-trusted-ca-file={p}/etcd/ca.crt", "--peer-client-cert-auth=true", *_etcd_timing(plan)]


def _etcd_timing(plan: Plan) -> list[str]:
    """Members on VMs see CPU steal and slow disks: etcd's tuning guide's election timeout of ten
    heartbeats, at 2.5 times its LAN defaults, keeps a busy member from forcing elections."""
    if len(plan.control_planes) == 1:
        return []
    return ["--heartbeat-interval=250", "--election-timeout=2500"]


def apiserver_args(plan: Plan, node: PlanNode, at: Layout = NODE_LAYOUT) -> list[str]:
    p = at.pki
    etcd_servers = ",".join(f"https://{n.ip}:{at.etcd_port}" for n in plan.control_planes)
    return [f"{BIN_DIR}/kube-apiserver", f"--advertise-address={node.ip}", "--allow-privileged=true",
            "--authorization-mode=Node,RBAC", f"--client-ca-file={p}/ca.crt",
            "--enable-admission-plugins=NodeRestriction", f"--etcd-servers={etcd_servers}",
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
            # Aggregated APIs (metrics-server) reached at their endpoints' pod IPs, which every
            # control plane routes to, not at their Service's cluster IP: a connection the
            # aggregator opened before this node's kube-proxy had the Service's rule left for
            # the default route un-NATed, and its kept-alive HTTP/2 stream never came back
            # (seen on the local stack: the APIService stayed FailedDiscoveryCheck for good).
            "--enable-aggregator-routing=true",
            f"--secure-port={at.api_port}",
            f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
            f"--service-account-key-file={p}/sa.pub", f"--service-account-signing-key-file={p}/sa.key",
            f"--service-cluster-ip-range={plan.service_cidr}",
            f"--tls-cert-file={p}/apiserver.crt", f"--tls-private-key-file={p}/apiserver.key",
            # Kubelets' serving certificates come from the cluster CA: verify them (CIS 1.2.5).
            f"--kubelet-certificate-authority={p}/ca.crt",
            f"--encryption-provider-config={at.conf}/{ENCRYPTION_CONFIG}",
            f"--audit-policy-file={at.conf}/{AUDIT_POLICY}", f"--audit-log-path={at.audit_log}",
            "--audit-log-maxage=30", "--audit-log-maxbackup=10", "--audit-log-maxsize=100",
            "--profiling=false"]


def controller_manager_args(plan: Plan, at: Layout = NODE_LAYOUT) -> list[str]:
    p, conf = at.pki, f"{at.conf}/controller-manager.conf"
    return [f"{BIN_DIR}/kube-controller-manager", f"--kubeconfig={conf}", f"--authentication-kubeconfig={conf}",
            f"--authorization-kubeconfig={conf}", "--bind-address=127.0.0.1",
            f"--client-ca-file={p}/ca.crt", f"--cluster-cidr={plan.pod_cidr}", "--allocate-node-cidrs=false",
            f"--cluster-signing-cert-file={p}/ca.crt", f"--cluster-signing-key-file={p}/ca.key",
            f"--requestheader-client-ca-file={p}/front-proxy-ca.crt", f"--root-ca-file={p}/ca.crt",
            f"--service-account-private-key-file={p}/sa.key", f"--service-cluster-ip-range={plan.service_cidr}",
            "--use-service-account-credentials=true", "--profiling=false", *_leader_election(plan)]


def scheduler_args(plan: Plan, at: Layout = NODE_LAYOUT) -> list[str]:
    conf = f"{at.conf}/scheduler.conf"
    return [f"{BIN_DIR}/kube-scheduler", f"--kubeconfig={conf}", f"--authentication-kubeconfig={conf}",
            f"--authorization-kubeconfig={conf}", "--bind-address=127.0.0.1", "--profiling=false",
            *_leader_election(plan)]


def control_plane_files(plan: Plan, node: PlanNode, certs: Mapping[str, pki.CertKey]) -> list[FileSpec]:
    p = PKI_DIR
    local = f"https://127.0.0.1:{API_PORT}"
    files = [
        _text(f"{p}/ca.crt", certs["cluster-ca"].cert), _text(f"{p}/ca.key", certs["cluster-ca"].key, 0o600),
        _text(f"{p}/front-proxy-ca.crt", certs["front-proxy-ca"].cert),
        _text(f"{p}/etcd/ca.crt", certs["etcd-ca"].cert),
        _text(f"{p}/sa.pub", certs["service-account"].cert), _text(f"{p}/sa.key", certs["service-account"].key, 0o600),
        *_pair(certs, "apiserver", f"{p}/apiserver"),
        *_pair(certs, "apiserver-kubelet-client", f"{p}/apiserver-kubelet-client"),
        *_pair(certs, "apiserver-etcd-client", f"{p}/apiserver-etcd-client"),
        *_pair(certs, "front-proxy-client", f"{p}/front-proxy-client"),
        *_pair(certs, "super-admin", f"{p}/vmkube-super-admin"),  # for the bootstrap's reads (bootstrap/api.py)
        *_pair(certs, f"etcd-server-{node.name}", f"{p}/etcd/server"),
        *_pair(certs, f"etcd-peer-{node.name}", f"{p}/etcd/peer"),
        _text("/etc/kubernetes/controller-manager.conf",
              _kubeconfig(plan, certs, "controller-manager", "system:kube-controller-manager", local), 0o600),
        _text("/etc/kubernetes/scheduler.conf", _kubeconfig(plan, certs, "scheduler", "system:kube-scheduler", local),
              0o600),
        _text("/etc/kubernetes/admin.conf", _kubeconfig(plan, certs, "admin", ADMIN_USER, local)),
        _text(SUPER_ADMIN_CONF, _kubeconfig(plan, certs, "super-admin", "vmkube-super-admin", local)),
        _text(f"/etc/kubernetes/{ENCRYPTION_CONFIG}", encryption_config(certs["encryption"])),
        _text(f"/etc/kubernetes/{AUDIT_POLICY}", yaml.safe_dump(AUDIT_POLICY_DOC, sort_keys=False)),
        _text("/etc/systemd/system/etcd.service", _unit("etcd", etcd_args(plan, node))),
        _text("/etc/systemd/system/kube-apiserver.service",
              _unit("Kubernetes API server", apiserver_args(plan, node), after="etcd.service")),
        _text("/etc/systemd/system/kube-controller-manager.service",
              _unit("Kubernetes controller manager", controller_manager_args(plan), after="kube-apiserver.service")),
        _text("/etc/systemd/system/kube-scheduler.service",
              _unit("Kubernetes scheduler", scheduler_args(plan), after="kube-apiserver.service")),
    ]
    return files


def _leader_election(plan: Plan) -> list[str]:
    """One control plane has no one to elect; with three, leases tolerate slow (emulated) machines."""
    if len(plan.control_planes) == 1:
        return ["--leader-elect=false"]
    return ["--leader-elect=true", "--leader-elect-lease-duration=60s", "--leader-elect-renew-deadline=40s",
            "--leader-elect-retry-period=5s"]


def api_load_balancer(plan: Plan, bind: str = f"127.0.0.1:{API_PORT}") -> str:
    """haproxy passing TCP through to the API servers. A connection that fails is retried on
    another server at once, before health checks (3 x 5 s) notice. With several control
    planes, servers that fail their /readyz check get no new connections; but an API server
    too busy to answer its check in time (a loaded or emulated machine) is still better than
    none, so while every check fails, every server takes connections again (the backups).
    With one control plane there is nothing to fail over to: no check, which could only
    cut the worker off from a server that is merely slow."""
    cps = plan.control_planes
    if len(cps) == 1:
        servers = f"    server {cps[0].name} {cps[0].ip}:{API_PORT}\n"
        checks = ""
    else:
        servers = "".join(f"    server {n.name} {n.ip}:{API_PORT} check check-ssl verify none inter 5s fall 3 rise 2\n"
                          for n in cps)
        servers += "".join(f"    server {n.name}-unchecked {n.ip}:{API_PORT} backup\n" for n in cps)
        checks = ("    option httpchk GET /readyz\n    http-check expect status 200\n    timeout check 15s\n"
                  "    option allbackups\n")
    return ("# Written by vmkube: the worker's way to the Kubernetes API.\n"
            "global\n    log /dev/log local0 warning\n    maxconn 4000\n\n"
            "defaults\n    mode tcp\n    log global\n    timeout connect 5s\n"
            "    timeout client 1h\n    timeout server 1h\n    retries 3\n    option redispatch 1\n\n"
            f"frontend kube-apiserver\n    bind {bind}\n    default_backend control-plane\n\n"
            f"backend control-plane\n    balance leastconn\n{checks}{servers}")


def worker_files(plan: Plan) -> list[FileSpec]:
    return [_text(HAPROXY_CONFIG, api_load_balancer(plan))]


def node_files(plan: Plan, node: PlanNode, certs: Mapping[str, pki.CertKey],
               images: Mapping[str, bytes], sandbox_image: str = DEFAULT_SANDBOX_IMAGE) -> list[FileSpec]:
    server = LOCAL_API
    kubelet_config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": f"{PKI_DIR}/ca.crt"}},
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "systemd", "clusterDomain": CLUSTER_DOMAIN, "clusterDNS": [plan.dns_ip],
        "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
        "tlsCertFile": "/var/lib/kubelet/pki/kubelet.crt", "tlsPrivateKeyFile": "/var/lib/kubelet/pki/kubelet.key",
        "podCIDR": node.pod_cidr, "failSwapOn": True, "rotateCertificates": False, "serverTLSBootstrap": False,
        "registerWithTaints": [_taint(t) for t in node.taints],
    }
    proxy_config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": "/etc/kubernetes/kube-proxy.conf"},
        "mode": "iptables", "clusterCIDR": plan.pod_cidr,
    }
    cni = {
        "cniVersion": "1.0.0", "name": "vmkube",
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": True, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": node.pod_cidr}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    # Pods on other nodes are reached through those nodes: one route per remote pod range.
    routes = [f"/sbin/ip route replace {n.pod_cidr} via {n.ip}" for n in plan.nodes if n.name != node.name]
    route_unit = _unit("routes to the other nodes' pod ranges",
                       ["/bin/sh -c " + json.dumps("; ".join(routes) or "true")], kind="oneshot")
    kubelet = [f"{BIN_DIR}/kubelet", "--config=/var/lib/kubelet/config.yaml",
               "--kubeconfig=/etc/kubernetes/kubelet.conf", f"--node-ip={node.ip}",
               f"--hostname-override={node.name}"]
    labels = {k: v for k, v in node.labels.items() if not restricted_label(k)}
    if labels:
        kubelet.append("--node-labels=" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())))
    containerd = (
        "version = 2\n\n"
        '[plugins."io.containerd.grpc.v1.cri"]\n'
        f'  sandbox_image = "{sandbox_image}"\n'
        '[plugins."io.containerd.grpc.v1.cri".cni]\n'
        '  bin_dir = "/usr/lib/cni"\n  conf_dir = "/etc/cni/net.d"\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n  runtime_type = "io.containerd.runc.v2"\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n'
    )
    return [
        _text(f"{PKI_DIR}/ca.crt", certs["cluster-ca"].cert),
        *_pair(certs, f"kubelet-{node.name}", "/var/lib/kubelet/pki/kubelet"),
        _text("/etc/kubernetes/kubelet.conf",
              pki.kubeconfig(plan.cluster, server, certs["cluster-ca"].cert, f"system:node:{node.name}",
                             certs[f"kubelet-{node.name}"]), 0o600),
        _text("/etc/kubernetes/kube-proxy.conf",
              _kubeconfig(plan, certs, "kube-proxy", "system:kube-proxy", server), 0o600),
        _text("/var/lib/kubelet/config.yaml", yaml.safe_dump(kubelet_config, sort_keys=False)),
        _text("/var/lib/kube-proxy/config.yaml", yaml.safe_dump(proxy_config, sort_keys=False)),
        _text("/etc/cni/net.d/10-vmkube.conflist", json.dumps(cni, indent=2)),
        _text("/etc/containerd/config.toml", containerd),
        _text("/etc/sysctl.d/90-vmkube.conf",
              "net.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\n"),
        _text("/etc/modules-load.d/vmkube.conf", "br_netfilter\noverlay\n"),
        *(FileSpec(tar_path(ref), tar) for ref, tar in sorted(images.items())),
        _text("/etc/systemd/system/vmkube-routes.service", route_unit),
        _text("/etc/systemd/system/kubelet.service", _unit("Kubernetes node agent", kubelet,
                                                           after="containerd.service")),
        _text("/etc/systemd/system/kube-proxy.service",
              _unit("Kubernetes service proxy", [f"{BIN_DIR}/kube-proxy", "--config=/var/lib/kube-proxy/config.yaml",
                                                 f"--hostname-override={node.name}"])),
    ]


def _taint(text: str) -> dict[str, str]:
    head, _, effect = text.rpartition(":")
    key, _, value = head.partition("=")
    return {"key": key, "value": value, "effect": effect}


def restricted_label(key: str) -> bool:
    """The NodeRestriction admission plugin refuses these from kubelets; vmkube sets them as admin."""
    prefix = key.split("/", 1)[0] if "/" in key else ""
    return prefix.endswith(("kubernetes.io", "k8s.io")) and not prefix.startswith(("kubelet.", "node.kubernetes.io"))
