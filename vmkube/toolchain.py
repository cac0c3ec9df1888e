"""Where tools/build keeps the binaries it builds, for the program to hand to nodes.

The toolchain belongs to a vmkube checkout. A program using vmkube as an installed
package finds it through ``VMKUBE_CHECKOUT`` (a checkout where `make toolchain`
ran), or gets its binaries from kubernetes.binaries.url or .dir instead.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from vmkube.errors import ConfigError

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def checkout() -> Path | None:
    """The vmkube checkout whose tools/ build the toolchain, if there is one."""
    root = Path(os.environ["VMKUBE_CHECKOUT"]) if os.environ.get("VMKUBE_CHECKOUT") else PACKAGE_ROOT
    return root if (root / "tools" / "build").is_file() else None


def tool_dir(tool: str, required: bool = True) -> Path:
    """The directory holding ``tool``'s binaries; unless ``required`` is False,
    ConfigError with the fix when it is not built."""
    root = checkout()
    if root is None:
        if required:
            raise ConfigError([f"vmkube:kubernetes.binaries: no vmkube checkout to take the toolchain's {tool} from; "
                               "set VMKUBE_CHECKOUT to one where `make toolchain` ran, or set "
                               "kubernetes.binaries.url or .dir"])
        return Path("/nonexistent/vmkube-toolchain") / tool
    out = subprocess.run([str(root / "tools" / "build"), "--tool-dir", tool], capture_output=True, text=True)
    path = Path(out.stdout.strip())
    if required and (out.returncode != 0 or not (path / ".complete").is_file()):
        raise ConfigError([f"vmkube:kubernetes.binaries: the toolchain's {tool} binaries are not built yet; "
                           "run `make toolchain` (or set kubernetes.binaries.dir)"])
    return path
