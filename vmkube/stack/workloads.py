"""The apps of workloads/ on the cluster, through pulumi-kubernetes.

One Kubernetes provider per cluster, built from the kubeconfig output. Its
``cluster_identifier`` is the cluster's name, so a new kubeconfig (a renewed
certificate, another API address) updates the provider instead of replacing
every object it manages. Each app is a ConfigGroup of its checked manifests;
pulumi-kubernetes waits until Deployments reach their replicas.
"""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from vmkube.workloads import Manifest, node_ports
from vmkube.roles import WORKER


class Workloads(pulumi.ComponentResource):
    def __init__(self, name: str, apps: dict[str, list[Manifest]], kubeconfig: pulumi.Input[str],
                 cluster_identifier: str, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vmkube:index:Workloads", name, None, opts)
        self.provider = k8s.Provider(
            f"{name}-kubernetes", kubeconfig=kubeconfig, cluster_identifier=cluster_identifier,
            opts=pulumi.ResourceOptions(parent=self))
        self.apps = {
            app: k8s.yaml.v2.ConfigGroup(
                app, objs=[dict(m.obj) for m in manifests], resource_prefix=app,
                opts=pulumi.ResourceOptions(parent=self, provider=self.provider))
            for app, manifests in sorted(apps.items())
        }
        self.register_outputs({"apps": sorted(self.apps)})


def app_urls(apps: dict[str, list[Manifest]], nodes: pulumi.Output[list]) -> pulumi.Output[dict]:
    """App -> URLs it answers on from outside the cluster (NodePort Services, on the first worker)."""
    ports = node_ports(apps)

    def urls(nodes: list[dict] | None) -> dict[str, list[str]]:
        nodes = nodes or []
        workers = [n for n in nodes if n.get("role") == WORKER and n.get("ip")] or \
            [n for n in nodes if n.get("ip")]
        host = workers[0]["ip"] if workers else "<node>"
        return {app: [f"http://{host}:{p}" for p in ps] for app, ps in ports.items()}
    return nodes.apply(urls)
