"""From stack config to a hypervisor connection, through plain settings.

The settings dict is what the Pulumi layer hands to the VM pool resource as
an input (the vSphere password inside it is marked secret there); the provider
process turns it back into a connection with ``open_hypervisor``.
"""

from __future__ import annotations

from typing import Any, Mapping

from infra.config import ClusterSpec
from infra.images import built_image_dir

from .base import Hypervisor

# Settings whose change means "other VMs somewhere else": the pool is replaced.
IDENTITY = {"libvirt": ("kind", "uri", "storagePool"),
            "vsphere": ("kind", "server", "datacenter", "folder")}


def settings_for(spec: ClusterSpec) -> dict[str, Any]:
    if spec.libvirt is not None:
        lv = spec.libvirt
        return {"kind": "libvirt", "uri": lv.uri, "network": lv.network, "storagePool": lv.storage_pool,
                "domainType": lv.domain_type}
    vs = spec.vsphere
    return {"kind": "vsphere", "server": vs.server, "user": vs.user, "password": vs.password.reveal(),
            "datacenter": vs.datacenter, "datastore": vs.datastore, "network": vs.network,
            "folder": vs.folder, "cluster": vs.cluster, "resourcePool": vs.resource_pool,
            "linkedClone": vs.linked_clone, "caFile": vs.ca_file, "thumbprint": vs.thumbprint,
            "insecure": vs.insecure}


def image_for(spec: ClusterSpec) -> str:
    """The template (vSphere) or base image (libvirt) the nodes boot from."""
    if spec.vsphere is not None:
        return spec.vsphere.template
    return spec.libvirt.base_image or str(built_image_dir())


def open_hypervisor(settings: Mapping[str, Any]) -> Hypervisor:
    kind = settings.get("kind")
    if kind == "libvirt":
        from .libvirt import LibvirtHypervisor
        return LibvirtHypervisor(uri=settings["uri"], network=settings["network"],
                                 storage_pool=settings["storagePool"], domain_type=settings["domainType"])
    if kind == "vsphere":
        from .vsphere import VsphereHypervisor
        return VsphereHypervisor(
            server=settings["server"], user=settings["user"], password=settings["password"],
            datacenter=settings["datacenter"], datastore=settings["datastore"], network=settings["network"],
            folder=settings.get("folder", ""), cluster=settings.get("cluster", ""),
            resource_pool=settings.get("resourcePool", ""), linked_clone=settings.get("linkedClone", False),
            ca_file=settings.get("caFile", ""), thumbprint=settings.get("thumbprint", ""),
            insecure=settings.get("insecure", False))
    raise ValueError(f"unknown hypervisor kind {kind!r}")


def identity(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {k: settings.get(k) for k in IDENTITY.get(settings.get("kind", ""), ("kind",))}
