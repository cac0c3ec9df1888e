"""The cluster as Pulumi components: one Cluster, a NodePool per pool.

The components carry the planned nodes as outputs today; the hypervisor,
bootstrap and workload resources hang under them as children.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi

from infra.config import ClusterSpec, NodeSpec
from infra.sshkeys import public_from_private

from .keys import SshKey


def node_output(node: NodeSpec) -> dict[str, Any]:
    return {"name": node.name, "role": node.role, "pool": node.pool,
            "cpus": node.machine.cpus, "memoryMb": node.machine.memory_mb,
            "diskGb": node.machine.disk_gb, "labels": dict(node.labels),
            "taints": list(node.taints)}


@dataclass(frozen=True)
class ClusterArgs:
    spec: ClusterSpec


class NodePool(pulumi.ComponentResource):
    """The nodes of one role and size: the control plane, or one worker pool."""

    def __init__(self, name: str, nodes: list[NodeSpec], opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vmkube:index:NodePool", name, None, opts)
        self.nodes = pulumi.Output.from_input([node_output(n) for n in nodes])
        self.register_outputs({"nodes": self.nodes})


class Cluster(pulumi.ComponentResource):
    """A Kubernetes cluster on VMs of one hypervisor."""

    def __init__(self, name: str, args: ClusterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vmkube:index:Cluster", name, None, opts)
        spec = args.spec
        child = pulumi.ResourceOptions(parent=self)

        if spec.ssh.private_key is None:
            key = SshKey(f"{name}-ssh", comment=f"vmkube-{spec.name}", opts=child)
            self.ssh_public_key: pulumi.Output[str] = key.public_key
            # Secret in state already (additional_secret_outputs); marked here too so
            # that whatever reads it from the component keeps it secret.
            self.ssh_private_key: pulumi.Output[str] = pulumi.Output.secret(key.private_key)
        else:
            private = spec.ssh.private_key.reveal()
            self.ssh_public_key = pulumi.Output.from_input(public_from_private(private))
            self.ssh_private_key = pulumi.Output.secret(private)

        nodes = spec.nodes()
        pools = [NodePool(f"{name}-control-plane", [n for n in nodes if n.role == "control-plane"], child)]
        pools += [NodePool(f"{name}-{p.name}", [n for n in nodes if n.pool == p.name], child)
                  for p in spec.worker_pools]
        self.pools = pools
        self.nodes = pulumi.Output.all(*[p.nodes for p in pools]).apply(
            lambda groups: [n for group in groups for n in group])
        self.register_outputs({"nodes": self.nodes, "sshPublicKey": self.ssh_public_key})
