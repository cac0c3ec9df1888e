"""vmkube: node VMs, Kubernetes over SSH and the apps in workloads/, from one `pulumi up`."""

import pulumi

from infra.stack import Cluster, ClusterArgs, load_spec

spec = load_spec()
cluster = Cluster(spec.name, ClusterArgs(spec))

pulumi.export("hypervisor", spec.hypervisor)
pulumi.export("nodes", cluster.nodes)
pulumi.export("sshPublicKey", cluster.ssh_public_key)
