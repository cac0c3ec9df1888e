"""One hypervisor interface (base.Hypervisor), two backends: libvirt and vSphere."""
