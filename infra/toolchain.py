"""Where tools/build keeps the binaries it builds, for the program to hand to nodes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from infra.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def tool_dir(tool: str, required: bool = True) -> Path:
    """The directory holding ``tool``'s binaries; unless ``required`` is False,
    ConfigError with the fix when it is not built."""
    out = subprocess.run([str(ROOT / "tools" / "build"), "--tool-dir", tool], capture_output=True, text=True)
    path = Path(out.stdout.strip())
    if required and (out.returncode != 0 or not (path / ".complete").is_file()):
        raise ConfigError([f"vmkube:kubernetes.binaries: the toolchain's {tool} binaries are not built yet; "
                           "run `make toolchain` (or set kubernetes.binaries.dir)"])
    return path
