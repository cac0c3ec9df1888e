"""The cluster as Pulumi components: one Cluster, a NodePool per pool, and
under each NodePool the VmPool resource holding its VMs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi

from infra.config import ClusterSpec, MachineSpec, NodeSpec
from infra.sshkeys import public_from_private

from .bootstrap import Bootstrap
from .keys import SshKey
from .vmpool import LeavingVms, VmPool


def node_output(node: NodeSpec) -> dict[str, Any]:
    return {"name": node.name, "role": node.role, "pool": node.pool,
            "cpus": node.machine.cpus, "memoryMb": node.machine.memory_mb,
            "diskGb": node.machine.disk_gb, "labels": dict(node.labels),
            "taints": list(node.taints)}


@dataclass(frozen=True)
class ClusterArgs:
    spec: ClusterSpec
    hypervisor: dict[str, Any]  # connection settings (infra.hypervisors.connect.settings_for)
    image: str                  # template or base image the nodes boot from
    binaries: dict[str, Any] = field(default_factory=dict)  # where node binaries come from ({} without install)


@dataclass(frozen=True)
class PoolArgs:
    nodes: list[NodeSpec]
    machine: MachineSpec
    config_path: str


class NodePool(pulumi.ComponentResource):
    """The nodes of one role and size: the control plane, or one worker pool."""

    def __init__(self, name: str, pool: PoolArgs, cluster: ClusterArgs, ssh_public_key: pulumi.Input[str],
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vmkube:index:NodePool", name, None, opts)
        planned = [node_output(n) for n in pool.nodes]
        self.vms = VmPool(
            f"{name}-vms", hypervisor=cluster.hypervisor,
            owner=f"vmkube/{pulumi.get_project()}/{pulumi.get_stack()}/{name}",
            names=[n.name for n in pool.nodes], cpus=pool.machine.cpus, memory_mb=pool.machine.memory_mb,
            disk_gb=pool.machine.disk_gb, image=cluster.image, ssh_user=cluster.spec.ssh.user,
            ssh_public_key=ssh_public_key, config_path=pool.config_path,
            keep_leaving=cluster.spec.kubernetes.install, opts=pulumi.ResourceOptions(parent=self))
        self.nodes = self.vms.vms.apply(lambda vms: _merge(planned, vms))
        self.host_public_keys = self.vms.hostPublicKeys
        self.register_outputs({"nodes": self.nodes})


def _merge(planned: list[dict[str, Any]], vms: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    seen = {vm["name"]: vm for vm in vms or []}
    return [{**node, **{k: seen.get(node["name"], {}).get(k, "") for k in ("ip", "mac", "power", "id")}}
            for node in planned]


def _with_status(nodes: list[dict[str, Any]], status: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    seen = {s["name"]: s for s in status or []}
    return [{**n, "ready": seen.get(n["name"], {}).get("ready", False),
             "kubeletVersion": seen.get(n["name"], {}).get("kubeletVersion", "")} for n in nodes]


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
        pools = [NodePool(f"{name}-control-plane",
                          PoolArgs([n for n in nodes if n.role == "control-plane"], spec.control_plane.machine,
                                   "vmkube:controlPlane"),
                          args, self.ssh_public_key, child)]
        pools += [NodePool(f"{name}-{p.name}",
                           PoolArgs([n for n in nodes if n.pool == p.name], p.machine, f"vmkube:workerPools[{i}]"),
                           args, self.ssh_public_key, child)
                  for i, p in enumerate(spec.worker_pools)]
        self.pools = pools
        self.nodes = pulumi.Output.all(*[p.nodes for p in pools]).apply(
            lambda groups: [n for group in groups for n in group])
        self.host_public_keys = pulumi.Output.all(*[p.host_public_keys for p in pools]).apply(
            lambda maps: {k: v for m in maps for k, v in (m or {}).items()})
        self.kubeconfig: pulumi.Output[str] | None = None
        if spec.kubernetes.install:
            self.kubernetes = self._bootstrap(name, args, nodes, pools)
            # Workers that left the config are drained by the bootstrap, then their VMs go.
            self.leaving = LeavingVms(f"{name}-leaving-vms", [p.vms for p in pools], args.hypervisor,
                                      pulumi.ResourceOptions(parent=self, depends_on=[self.kubernetes]))
            self.kubeconfig = pulumi.Output.secret(self.kubernetes.kubeconfig)
            self.nodes = pulumi.Output.all(self.nodes, self.kubernetes.nodeStatus).apply(
                lambda pair: _with_status(pair[0], pair[1]))
        self.register_outputs({"nodes": self.nodes, "sshPublicKey": self.ssh_public_key})

    def _bootstrap(self, name: str, args: ClusterArgs, nodes: list[NodeSpec], pools: list[NodePool]) -> Bootstrap:
        spec = args.spec
        planned = {n.name: n for n in nodes}

        def node_inputs(values: list) -> list[dict[str, Any]]:
            vms = [vm for group in values[:len(pools)] for vm in (group or [])]
            keys = {k: v for m in values[len(pools):] for k, v in (m or {}).items()}
            return [{"name": vm["name"], "role": planned[vm["name"]].role, "ip": vm["ip"],
                     "hostKey": keys[vm["name"]], "memoryMb": planned[vm["name"]].machine.memory_mb,
                     "labels": dict(planned[vm["name"]].labels), "taints": list(planned[vm["name"]].taints)}
                    for vm in vms]

        node_list = pulumi.Output.all(*[p.vms.vms for p in pools], *[p.vms.hostPublicKeys for p in pools]) \
            .apply(node_inputs)
        bastion = spec.ssh.bastion
        ssh = {"user": spec.ssh.user, "port": spec.ssh.port, "privateKey": self.ssh_private_key,
               "connectTimeout": spec.ssh.connect_timeout,
               "bastion": {"host": bastion.host, "port": bastion.port, "user": bastion.user,
                           "hostKey": bastion.host_key} if bastion else None}
        props = {"cluster": spec.name, "version": spec.kubernetes.version,
                 "podCidr": str(spec.kubernetes.pod_cidr), "serviceCidr": str(spec.kubernetes.service_cidr),
                 "nodes": node_list, "ssh": ssh, "binaries": args.binaries,
                 "endpoint": spec.control_plane.endpoint}
        return Bootstrap(f"{name}-kubernetes", props,
                         pulumi.ResourceOptions(parent=self, depends_on=[p.vms for p in pools]))
