"""vmkube: node VMs, Kubernetes over SSH and the apps in workloads/, from one `pulumi up`.

A stack with `vmkube:clusterStack` set holds only apps, deployed onto the
cluster of that other stack through its kubeconfig output (StackReference).
"""

import pulumi

from infra.stack import Cluster, Workloads, app_urls, load_apps, load_apps_stack, load_cluster_args

apps_stack = load_apps_stack()
if apps_stack is not None:
    cluster = pulumi.StackReference(apps_stack.cluster_stack)
    apps = load_apps(apps_stack)
    Workloads(f"{pulumi.get_stack()}-apps", apps, cluster.require_output("kubeconfig"),
              apps_stack.cluster_stack)
    pulumi.export("clusterStack", apps_stack.cluster_stack)
    pulumi.export("apps", app_urls(apps, cluster.get_output("nodes")))
else:
    args = load_cluster_args()
    apps = load_apps(args.spec)
    cluster = Cluster(args.spec.name, args)
    pulumi.export("hypervisor", args.spec.hypervisor)
    pulumi.export("nodes", cluster.nodes)
    pulumi.export("sshPublicKey", cluster.ssh_public_key)
    pulumi.export("hostKeys", cluster.host_public_keys)
    if cluster.kubeconfig is not None:
        pulumi.export("kubeconfig", cluster.kubeconfig)
    if apps:
        Workloads(f"{args.spec.name}-apps", apps, cluster.kubeconfig, args.spec.name,
                  pulumi.ResourceOptions(depends_on=[cluster]))
        pulumi.export("apps", app_urls(apps, cluster.nodes))
