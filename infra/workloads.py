"""The apps under workloads/: one folder each, holding plain Kubernetes manifests."""

from __future__ import annotations

from pathlib import Path

MANIFEST_SUFFIXES = (".yaml", ".yml")


def list_apps(root: Path) -> list[str]:
    """App names: folders of ``root`` that hold at least one manifest."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and any(f.suffix in MANIFEST_SUFFIXES for f in p.iterdir()))
