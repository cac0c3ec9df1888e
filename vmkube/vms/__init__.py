"""Node VMs: pools converged on one hypervisor interface (base.Hypervisor) with two backends, libvirt and vSphere."""
