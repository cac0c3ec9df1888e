"""Old pickle path of the Bootstrap provider (see infra/__init__.py)."""

from vmkube.stack.bootstrap import BootstrapProvider

__all__ = ["BootstrapProvider"]
