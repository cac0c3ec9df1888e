"""vmkube: node VMs, Kubernetes over SSH and the apps in workloads/, from one `pulumi up`.

This program is the vmkube component's first user: it reads the stack's
``vmkube:`` config into ClusterArgs. A stack with ``vmkube:clusterStack`` set
holds only apps, deployed onto the cluster of that other stack through its
kubeconfig output (StackReference).
"""

import pulumi

from vmkube.stack import (Cluster, ClusterArgs, Workloads, app_urls, load_apps, load_apps_stack,
                          load_cluster_spec)

apps_stack = load_apps_stack()
if apps_stack is not None:
    cluster = pulumi.StackReference(apps_stack.cluster_stack)
    apps = load_apps(apps_stack)
    Workloads(f"{pulumi.get_stack()}-apps", apps, cluster.require_output("kubeconfig"),
              apps_stack.cluster_stack)
    pulumi.export("clusterStack", apps_stack.cluster_stack)
    pulumi.export("apps", app_urls(apps, cluster.get_output("nodes")))
else:
    spec = load_cluster_spec()
    apps = load_apps(spec)
    cluster = Cluster(spec.name, ClusterArgs.from_spec(spec), apps=tuple(apps))
    pulumi.export("hypervisor", spec.hypervisor)
    pulumi.export("nodes", cluster.nodes)
    pulumi.export("sshPublicKey", cluster.ssh_public_key)
    pulumi.export("hostKeys", cluster.host_public_keys)
    if cluster.kubeconfig is not None:
        pulumi.export("kubeconfig", cluster.kubeconfig)
        pulumi.export("certificates", cluster.certificates)  # name -> notAfter; `make certs`
    if apps:
        Workloads(f"{spec.name}-apps", apps, cluster.kubeconfig, spec.name,
                  pulumi.ResourceOptions(depends_on=[cluster]))
        pulumi.export("apps", app_urls(apps, cluster.nodes))
