"""The provider paths of stacks created before the move to ``vmkube`` (see infra/__init__.py)."""

import vmkube.stack  # noqa: F401  - installs vmkube's error formatting in the provider host
