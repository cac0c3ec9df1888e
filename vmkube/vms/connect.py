"""From a hypervisor's settings to a connection, and where a stack's nodes boot from.

The settings are the config's own LibvirtSpec or VsphereSpec; they reach the VM
pool providers through the engine as props (vmkube.contracts), and each provider
call opens its connection here.
"""

from __future__ import annotations

from vmkube.config import ClusterSpec, LibvirtSpec, VsphereSpec
from vmkube.vms.base import Hypervisor
from vmkube.vms.base_image import built_image_dir


def hypervisor_of(spec: ClusterSpec) -> LibvirtSpec | VsphereSpec:
    return spec.libvirt if spec.libvirt is not None else spec.vsphere


def image_for(spec: ClusterSpec) -> str:
    """The template (vSphere) or base image (libvirt) the nodes boot from."""
    if spec.vsphere is not None:
        return spec.vsphere.template
    return spec.libvirt.base_image or str(built_image_dir())


def open_hypervisor(settings: LibvirtSpec | VsphereSpec) -> Hypervisor:
    if isinstance(settings, LibvirtSpec):
        from vmkube.vms.libvirt import LibvirtHypervisor
        return LibvirtHypervisor(uri=settings.uri, network=settings.network, storage_pool=settings.storage_pool,
                                 domain_type=settings.domain_type)
    if isinstance(settings, VsphereSpec):
        from vmkube.vms.vsphere import VsphereHypervisor
        return VsphereHypervisor(settings)
    raise TypeError(f"not hypervisor settings: {type(settings).__name__}")
