"""The cluster add-ons the bootstrap installs, so that `kubernetes.install: true` alone
gives a complete cluster: CoreDNS (cluster DNS), metrics-server (`kubectl top`, the
HorizontalPodAutoscaler) and kube-network-policies (NetworkPolicy enforced beside
the bridge CNI).

Versions are pinned per Kubernetes minor, as kubeadm and kubespray pin them. Every
image is named under one repository (vmkube:kubernetes.imageRepository, default
registry.k8s.io) with its upstream path and tag: a stack with registry access pulls
them, a stack without one gets them built from the Go module proxy and preloaded
under the same names. Manifests are rendered here as plain data; the Addons phase
applies what is missing or changed and waits until every add-on serves.
"""

from __future__ import annotations

import base64
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Mapping

import yaml

from vmkube import pki
from vmkube.errors import BootstrapError
from vmkube.nodes.files import FileSpec
from vmkube.versions import pins_for
from vmkube.nodes.phases import PARALLEL, Command, Node
from vmkube.waiting import wait_for

from vmkube.bootstrap import api
from vmkube.bootstrap.kubectl import KUBECTL
from vmkube.bootstrap.plan import CLUSTER_DOMAIN, Plan

log = logging.getLogger("vmkube.bootstrap")
ADDON_DIR = "/etc/kubernetes/addons"
# Under emulation (TCG) a new control plane takes minutes to start the add-ons' pods.
READY_TIMEOUT = 1500.0
METRICS_API = "v1beta1.metrics.k8s.io"
COREDNS, METRICS_SERVER, NETWORK_POLICY = "coredns", "metrics-server", "network-policy"
ADDONS = (COREDNS, METRICS_SERVER, NETWORK_POLICY)




@dataclass(frozen=True)
class AddonImages:
    coredns: str
    metrics_server: str
    network_policies: str
    pause: str


def images(version: str, repository: str) -> AddonImages:
    p = pins_for(version)
    return AddonImages(coredns=f"{repository}/coredns/coredns:{p.coredns}",
                       metrics_server=f"{repository}/metrics-server/metrics-server:{p.metrics_server}",
                       network_policies=f"{repository}/networking/kube-network-policies:{p.network_policies}",
                       pause=f"{repository}/pause:{p.pause}")


def image_of(addon: str, names: AddonImages) -> str:
    return {COREDNS: names.coredns, METRICS_SERVER: names.metrics_server,
            NETWORK_POLICY: names.network_policies}[addon]


def dns_replicas(nodes: int) -> int:
    """k0s's rule: one more replica for every ten nodes, and never more than there are nodes."""
    return max(1, min(nodes, 1 + math.ceil(nodes / 10)))


@dataclass(frozen=True)
class AddonConfig:
    """What a run installs: the images' names, and which add-ons (with CoreDNS's replicas)."""
    images: AddonImages
    coredns_replicas: int
    metrics_server: bool = True
    network_policy: bool = True

    def enabled(self) -> tuple[str, ...]:
        return tuple(a for a, on in ((COREDNS, True), (METRICS_SERVER, self.metrics_server),
                                     (NETWORK_POLICY, self.network_policy)) if on)


# -- manifests ------------------------------------------------------------------------

def _meta(name: str, namespace: str | None = "kube-system", **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/managed-by": "vmkube", **labels}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _rbac(name: str, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": _meta(f"vmkube:{name}", None),
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": _meta(f"vmkube:{name}", None),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"vmkube:{name}"},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": "kube-system"}]},
    ]


_RESTRICTED = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
               "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}

COREFILE = f""".:53 {{
    errors
    health {{
        lameduck 5s
    }}
    ready
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    prometheus :9153
    forward . /etc/resolv.conf {{
        max_concurrent 1000
    }}
    cache 30 {{
        disable success {CLUSTER_DOMAIN}
        disable denial {CLUSTER_DOMAIN}
    }}
    loop
    reload
    loadbalance
}}
"""


def coredns(plan: Plan, config: AddonConfig) -> list[dict[str, Any]]:
    labels = {"k8s-app": "kube-dns"}
    pod = {
        "metadata": {"labels": labels},
        "spec": {
            "serviceAccountName": "coredns", "priorityClassName": "system-cluster-critical",
            # Its upstream is the node's own resolver; it must not ask itself.
            "dnsPolicy": "Default",
            "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"},
                            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}],
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                           "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": labels}}],
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                                   "labelSelector": {"matchLabels": labels}}}]}},
            "containers": [{
                "name": "coredns", "image": config.images.coredns, "imagePullPolicy": "IfNotPresent",
                "args": ["-conf", "/etc/coredns/Corefile"],
                "resources": {"requests": {"cpu": "50m", "memory": "70Mi"}, "limits": {"memory": "170Mi"}},
                "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                          {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                          {"name": "metrics", "containerPort": 9153, "protocol": "TCP"}],
                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
                "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "initialDelaySeconds": 60,
                                  "timeoutSeconds": 5, "failureThreshold": 5},
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}},
                "securityContext": {**_RESTRICTED, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
            }],
            "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
        },
    }
    return [
        *_rbac("coredns", [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                            "verbs": ["list", "watch"]},
                           {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                            "verbs": ["list", "watch"]}]),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("coredns"), "data": {"Corefile": COREFILE}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta("coredns", **labels),
         "spec": {"replicas": config.coredns_replicas, "selector": {"matchLabels": labels},
                  "strategy": {"rollingUpdate": {"maxUnavailable": 1}}, "template": pod}},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta("coredns", **labels),
         "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {**_meta("kube-dns", **labels, **{"kubernetes.io/name": "CoreDNS"})},
         "spec": {"clusterIP": plan.dns_ip, "selector": labels,
                  "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                            {"name": "metrics", "port": 9153, "protocol": "TCP"}]}},
    ]


METRICS_SERVICE = "metrics-server"


def metrics_server(config: AddonConfig, ca_cert: str, serving: pki.CertKey) -> list[dict[str, Any]]:
    """With a serving certificate from the cluster CA: the API server verifies the
    aggregated API (no insecureSkipTLSVerify), and metrics-server verifies kubelets."""
    labels = {"k8s-app": "metrics-server"}
    b64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
    return [
        *_rbac("metrics-server", [{"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
                                  {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]}]),
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {**_meta("vmkube:aggregated-metrics-reader", None),
                      "labels": {"app.kubernetes.io/managed-by": "vmkube",
                                 "rbac.authorization.k8s.io/aggregate-to-view": "true",
                                 "rbac.authorization.k8s.io/aggregate-to-edit": "true",
                                 "rbac.authorization.k8s.io/aggregate-to-admin": "true"}},
         "rules": [{"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": _meta("vmkube:metrics-server-auth-reader"),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": "extension-apiserver-authentication-reader"},
         "subjects": [{"kind": "ServiceAccount", "name": "metrics-server", "namespace": "kube-system"}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": _meta("vmkube:metrics-server:auth-delegator", None),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
         "subjects": [{"kind": "ServiceAccount", "name": "metrics-server", "namespace": "kube-system"}]},
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "metadata": _meta("metrics-server-tls"),
         "data": {"tls.crt": b64(serving.cert), "tls.key": b64(serving.key), "ca.crt": b64(ca_cert)}},
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(METRICS_SERVICE, **labels),
         "spec": {"selector": labels, "ports": [{"name": "https", "port": 443, "targetPort": "https"}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta("metrics-server", **labels),
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "strategy": {"rollingUpdate": {"maxUnavailable": 0}},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "serviceAccountName": "metrics-server", "priorityClassName": "system-cluster-critical",
                      "containers": [{
                          "name": "metrics-server", "image": config.images.metrics_server,
                          "imagePullPolicy": "IfNotPresent",
                          "args": ["--secure-port=10250", "--tls-cert-file=/tls/tls.crt",
                                   "--tls-private-key-file=/tls/tls.key", "--kubelet-certificate-authority=/tls/ca.crt",
                                   "--kubelet-preferred-address-types=InternalIP", "--kubelet-use-node-status-port",
                                   # Kubelets are scraped once a minute: under emulation a tighter
                                   # cycle costs the control plane more than the numbers are worth.
                                   "--metric-resolution=60s"],
                          "ports": [{"name": "https", "containerPort": 10250, "protocol": "TCP"}],
                          "readinessProbe": {"httpGet": {"path": "/readyz", "port": "https", "scheme": "HTTPS"},
                                             "periodSeconds": 10, "initialDelaySeconds": 20},
                          "livenessProbe": {"httpGet": {"path": "/livez", "port": "https", "scheme": "HTTPS"},
                                            "periodSeconds": 10, "failureThreshold": 6},
                          "resources": {"requests": {"cpu": "100m", "memory": "200Mi"}},
                          "securityContext": {**_RESTRICTED, "runAsNonRoot": True, "runAsUser": 1000},
                          "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": True},
                                           {"name": "tmp", "mountPath": "/tmp"}],
                      }],
                      "volumes": [{"name": "tls", "secret": {"secretName": "metrics-server-tls"}},
                                  {"name": "tmp", "emptyDir": {}}],
                  }}}},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": _meta(METRICS_API, None),
         "spec": {"service": {"name": METRICS_SERVICE, "namespace": "kube-system"}, "group": "metrics.k8s.io",
                  "version": "v1beta1", "caBundle": b64(ca_cert), "groupPriorityMinimum": 100,
                  "versionPriority": 100}},
    ]


def network_policies(config: AddonConfig) -> list[dict[str, Any]]:
    labels = {"k8s-app": "kube-network-policies"}
    return [
        *_rbac("kube-network-policies", [
            {"apiGroups": [""], "resources": ["pods", "namespaces", "nodes"], "verbs": ["list", "watch"]},
            {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["list", "watch"]}]),
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": _meta("kube-network-policies", **labels),
         "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
             "hostNetwork": True, "serviceAccountName": "kube-network-policies",
             "priorityClassName": "system-node-critical", "tolerations": [{"operator": "Exists"}],
             "containers": [{
                 "name": "kube-network-policies", "image": config.images.network_policies,
                 "imagePullPolicy": "IfNotPresent",
                 # containerd 1.6 of Debian 12 has no NRI: pod addresses come from the API.
                 # The binary as `command` (the image's entrypoint would take it as its first argument,
                 # where Go's flag parsing stops: every flag after it would be ignored).
                 "command": ["/bin/netpol", "--hostname-override=$(NODE_NAME)", "--nfqueue-id=98",
                             "--disable-nri", "--v=1"],
                 "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                 "resources": {"requests": {"cpu": "50m", "memory": "50Mi"}},
                 "securityContext": {"privileged": True, "capabilities": {"add": ["NET_ADMIN"]}},
             }],
         }}}},
    ]


def manifests(plan: Plan, config: AddonConfig, certs: Mapping[str, pki.CertKey]) -> dict[str, list[dict[str, Any]]]:
    """Add-on -> its objects, for every add-on (enabled or not: a disabled one is removed)."""
    return {COREDNS: coredns(plan, config),
            METRICS_SERVER: metrics_server(config, certs["cluster-ca"].cert, certs["metrics-server"]),
            NETWORK_POLICY: network_policies(config)}


def manifest_path(addon: str, enabled: bool) -> str:
    return f"{ADDON_DIR}/{addon}.yaml" if enabled else f"{ADDON_DIR}/removed/{addon}.yaml"


def addon_files(plan: Plan, config: AddonConfig, certs: Mapping[str, pki.CertKey]) -> list[FileSpec]:
    on = config.enabled()
    return [FileSpec(manifest_path(a, a in on), yaml.safe_dump_all(objs, sort_keys=False).encode(), 0o600)
            for a, objs in manifests(plan, config, certs).items()]


# -- the phase ----------------------------------------------------------------------------

def decide_addons(config: AddonConfig, present: Mapping[str, int], expected: Mapping[str, int],
                  changed: list[str]) -> list[Command]:
    """Apply an enabled add-on whose manifest changed or whose objects are not all there;
    delete a disabled one whose objects are still there."""
    install, remove = [], []
    for addon in ADDONS:
        enabled = addon in config.enabled()
        path = manifest_path(addon, enabled)
        if enabled and (path in changed or present.get(addon, 0) < expected[addon]):
            install.append(addon)
        elif not enabled and present.get(addon, 0) > 0:
            remove.append(addon)
    # One kubectl for all of them: each start costs an API discovery (seconds under TCG).
    steps = []
    if install:
        files = " ".join(f"-f {manifest_path(a, True)}" for a in install)
        steps.append(Command(f"{KUBECTL} apply --server-side --force-conflicts {files}",
                             why=f"installing the add-ons: {', '.join(install)}"))
    if remove:
        files = " ".join(f"-f {manifest_path(a, False)}" for a in remove)
        steps.append(Command(f"{KUBECTL} delete --ignore-not-found {files}", why=f"removing the add-ons: {', '.join(remove)}"))
    return steps


@dataclass
class Addons:
    """On the first control plane: the add-ons installed, then every enabled one serving."""
    plan: Plan
    config: AddonConfig
    certs: Mapping[str, pki.CertKey]
    changed: Mapping[str, list[str]]  # node -> paths changed this run
    first: Node
    title: str = "install the cluster add-ons (DNS, metrics, network policy)"
    mode: str = PARALLEL

    def applies(self, node: Node) -> bool:
        return node is self.first

    def facts(self, node: Node) -> dict[str, int]:
        """Add-on -> how many of its objects the API has: one read of them all."""
        objects = [(addon, obj) for addon, objs in manifests(self.plan, self.config, self.certs).items()
                   for obj in objs]
        answers = api.get(node, *(api.path_of(obj) for _, obj in objects))
        present = {addon: 0 for addon in ADDONS}
        for (addon, _), answer in zip(objects, answers):
            present[addon] += answer.ok
        return present

    def expected(self) -> dict[str, int]:
        return {a: len(objs) for a, objs in manifests(self.plan, self.config, self.certs).items()}

    def run(self, node: Node) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        for step in decide_addons(self.config, self.facts(node), self.expected(),
                                  list(self.changed.get(node.name, []))):
            log.info("%s: %s", node.name, step.why)
            # An API server still busy starting the cluster (slow machines, emulated ones) times
            # requests out: the apply is idempotent, so it is tried again until the deadline.
            wait_for(f"{node.name}: {step.why}", lambda: self._try(node, step), error=BootstrapError,
                     timeout=max(60.0, deadline - time.monotonic()), interval=10.0)
        try:
            wait_for("the cluster add-ons", lambda: self.serving(node), error=BootstrapError,
                     timeout=max(60.0, deadline - time.monotonic()), interval=15.0)
        except BootstrapError as exc:
            # What the pods say is what the user needs: a pull that failed, a crash, a probe.
            raise BootstrapError(f"{exc}\n{pod_report(node)}") from None

    @staticmethod
    def _try(node: Node, step: Command) -> tuple[bool, str]:
        result = node.session.run(step.argv, sudo=True, check=False, timeout=step.timeout, change=True)
        return result.ok, result.stderr or result.stdout

    def serving(self, node: Node) -> tuple[bool, str]:
        """One read per look for all of them (bootstrap/api.py: curl, not kubectl, whose
        every start costs CPU a slow control plane's API server needs itself)."""
        on = self.config.enabled()
        wanted = [("Deployment", "coredns")] if COREDNS in on else []
        if METRICS_SERVER in on:
            wanted += [("Deployment", "metrics-server"), ("APIService", METRICS_API)]
        if NETWORK_POLICY in on:
            wanted.append(("DaemonSet", "kube-network-policies"))
        if not wanted:
            return True, "no add-on enabled"
        answers = api.get(node, *(api.object_path(kind, name) for kind, name in wanted))
        waiting = not_serving(wanted, [a.json() for a in answers])
        return not waiting, f"waiting for {', '.join(waiting)}"


def not_serving(wanted: list[tuple[str, str]], objects: list[Mapping[str, Any] | None]) -> list[str]:
    """The names of the wanted (kind, name) objects not serving, given what the API answered
    for each (None: absent, or no answer)."""
    objects = list(objects) + [None] * (len(wanted) - len(objects))
    return [name for (kind, name), obj in zip(wanted, objects) if not ready(kind, obj)]


def ready(kind: str, obj: Mapping[str, Any] | None) -> bool:
    if obj is None:
        return False
    status = obj.get("status", {})
    if kind == "DaemonSet":
        want = status.get("desiredNumberScheduled", 0)
        return want > 0 and status.get("numberAvailable", 0) == want and status.get("updatedNumberScheduled", 0) == want
    if kind == "APIService":
        return any(c.get("type") == "Available" and c.get("status") == "True" for c in status.get("conditions", []))
    want = obj.get("spec", {}).get("replicas", 1)
    return status.get("availableReplicas", 0) >= want and status.get("updatedReplicas", 0) >= want


def pod_report(node: Node) -> str:
    """The kube-system pods that are not ready, each with why, and the latest warnings."""
    lines = []
    pods, events = api.get(node, "/api/v1/namespaces/kube-system/pods",
                           "/api/v1/namespaces/kube-system/events?fieldSelector=type%3DWarning")
    if pods.json() is not None:
        lines += describe_pods(pods.json().get("items") or [])
    if events.json() is not None:
        items = sorted(events.json().get("items") or [], key=lambda e: e.get("lastTimestamp") or "")
        lines += [f"  warning {e.get('involvedObject', {}).get('name', '?')}: {e.get('reason', '')}: "
                  f"{(e.get('message') or '').strip()[:300]}" for e in items[-8:]]
    return "kube-system now:\n" + "\n".join(lines or ["  (the API server did not answer)"])


def describe_pods(items: list[Mapping[str, Any]]) -> list[str]:
    out = []
    for pod in items:
        status = pod.get("status", {})
        ready = all(c.get("ready") for c in status.get("containerStatuses", [])) and status.get("containerStatuses")
        if ready:
            continue
        why = []
        for c in status.get("containerStatuses", []):
            state = c.get("state", {})
            for kind in ("waiting", "terminated"):
                if kind in state:
                    why.append(f"{c.get('name')} {kind} {state[kind].get('reason', '')}: "
                               f"{(state[kind].get('message') or '').strip()[:200]}")
            if c.get("restartCount"):
                last = c.get("lastState", {}).get("terminated", {})
                why.append(f"{c.get('name')} restarted {c['restartCount']}x (last: {last.get('reason', '?')}, "
                           f"exit {last.get('exitCode', '?')})")
        for cond in status.get("conditions", []):
            if cond.get("status") != "True" and cond.get("message"):
                why.append(f"{cond.get('type')}: {cond['message'][:200]}")
        out.append(f"  pod {pod.get('metadata', {}).get('name')} on {pod.get('spec', {}).get('nodeName') or '-'}: "
                   f"{status.get('phase', '?')}; " + ("; ".join(why) or "not ready"))
    return out
