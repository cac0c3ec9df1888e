"""The Pulumi layer: reads stack config, registers vmkube's components.

Everything below infra/ except this package is plain Python.
"""

from . import errors
from .cluster import Cluster, ClusterArgs
from .apps import Workloads, app_urls
from .settings import load_apps, load_apps_stack, load_cluster_args

errors.install()

__all__ = ["Cluster", "ClusterArgs", "Workloads", "app_urls", "load_apps", "load_apps_stack", "load_cluster_args"]
