"""Old pickle paths of the VM pool providers (see infra/__init__.py)."""

from vmkube.stack.vmpool import LeavingVmsProvider, VmPoolProvider

__all__ = ["LeavingVmsProvider", "VmPoolProvider"]
