"""vmkube: node VMs, Kubernetes over SSH and the apps in workloads/, from one `pulumi up`."""

import pulumi

from infra.stack import Cluster, load_cluster_args

args = load_cluster_args()
cluster = Cluster(args.spec.name, args)

pulumi.export("hypervisor", args.spec.hypervisor)
pulumi.export("nodes", cluster.nodes)
pulumi.export("sshPublicKey", cluster.ssh_public_key)
pulumi.export("hostKeys", cluster.host_public_keys)
if cluster.kubeconfig is not None:
    pulumi.export("kubeconfig", cluster.kubeconfig)
