"""A program of its own that uses vmkube as a component: a lab cluster on this
machine's libvirt, a namespace per team through the cluster's Kubernetes provider.

    pip install <path or git URL of vmkube>
    pulumi stack init lab && pulumi up
"""

import pulumi
import pulumi_kubernetes as k8s

import vmkube
from vmkube import ControlPlaneSpec, LibvirtSpec, MachineSpec, WorkerPoolSpec

config = pulumi.Config()
cluster = vmkube.Cluster("lab", vmkube.ClusterArgs(
    hypervisor=LibvirtSpec(uri=config.get("libvirtUri") or "qemu:///system",
                           base_image=config.get("baseImage") or ""),
    control_plane=ControlPlaneSpec(count=1, machine=MachineSpec(cpus=2, memory_mb=2048, disk_gb=10)),
    worker_pools=[WorkerPoolSpec(name="apps", count=config.get_int("workers") or 2,
                                 machine=MachineSpec(cpus=2, memory_mb=2048, disk_gb=10), labels={"tier": "apps"})],
))

for team in ("payments", "search"):
    k8s.core.v1.Namespace(team, metadata={"name": team, "labels": {"team": team}},
                          opts=pulumi.ResourceOptions(provider=cluster.provider))

pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("nodes", cluster.nodes)
