"""The Pulumi layer: components, dynamic providers, and reading a stack's config.

Everything else under vmkube/ is plain Python.
"""

from vmkube.args import ClusterArgs
from vmkube.stack import errors
from vmkube.stack.component import Cluster
from vmkube.stack.stack_config import load_apps, load_apps_stack, load_cluster_spec
from vmkube.stack.workloads import Workloads, app_urls

errors.install()

__all__ = ["Cluster", "ClusterArgs", "Workloads", "app_urls", "load_apps", "load_apps_stack", "load_cluster_spec"]
