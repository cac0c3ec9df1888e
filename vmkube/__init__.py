"""vmkube: Kubernetes on VMs you own (vSphere, libvirt), as a Pulumi component.

    from vmkube import Cluster, ClusterArgs

The Pulumi layer is ``vmkube.stack``; every other module is plain Python that
imports no pulumi, so the names below load it only when first used.
"""

from __future__ import annotations

from typing import Any

from vmkube.args import ClusterArgs
from vmkube.config import (BastionSpec, BinariesSpec, ControlPlaneSpec, KubernetesSpec, LibvirtSpec, MachineSpec,
                           PkiSpec, Secret, SshSpec, VsphereSpec, WorkerPoolSpec)

_PULUMI_LAYER = ("Cluster",)


def __getattr__(name: str) -> Any:
    if name in _PULUMI_LAYER:
        from vmkube import stack
        return getattr(stack, name)
    raise AttributeError(f"module 'vmkube' has no attribute {name!r}")


__all__ = ["Cluster", "ClusterArgs", "BastionSpec", "BinariesSpec", "ControlPlaneSpec", "KubernetesSpec", "LibvirtSpec",
           "MachineSpec", "PkiSpec", "Secret", "SshSpec", "VsphereSpec", "WorkerPoolSpec"]
