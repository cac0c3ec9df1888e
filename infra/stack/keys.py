"""Old pickle path of the SSH key provider (see infra/__init__.py)."""

from vmkube.stack.keys import SshKeyProvider

__all__ = ["SshKeyProvider"]
