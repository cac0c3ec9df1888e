"""The Pulumi layer: reads stack config, registers vmkube's components.

Everything below infra/ except this package is plain Python.
"""

from .cluster import Cluster, ClusterArgs
from .settings import load_cluster_args

__all__ = ["Cluster", "ClusterArgs", "load_cluster_args"]
