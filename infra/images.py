"""Where tools/build-image puts the libvirt node image, so the program finds it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from infra.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "tools" / "build-image"


def cache_dir() -> Path:
    if os.environ.get("VMKUBE_CACHE"):
        return Path(os.environ["VMKUBE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vmkube"


def built_image_dir() -> Path:
    """The image the current recipe builds; the same key tools/build-image uses."""
    key = hashlib.sha256(RECIPE.read_bytes()).hexdigest()[:16]
    path = cache_dir() / "images" / f"debian12-{key}"
    if not (path / "image.json").is_file():
        raise ConfigError([f"vmkube:libvirt.baseImage: the node image is not built yet ({path}); "
                           "run `make image`, or set baseImage to an image of your own"])
    return path
