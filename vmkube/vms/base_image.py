"""Where tools/build-image puts the libvirt node image, so the program finds it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from vmkube.errors import ConfigError

from vmkube import toolchain


def cache_dir() -> Path:
    if os.environ.get("VMKUBE_CACHE"):
        return Path(os.environ["VMKUBE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vmkube"


# The toolchain builds tools/build-image bakes into the image (its BAKED_TOOLS).
BAKED_TOOLS = ("kubernetes", "etcd")


def image_key(root: Path) -> str:
    """tools/build-image's key: its own text, then the name of each baked build's directory."""
    digest = hashlib.sha256((root / "tools" / "build-image").read_bytes())
    for tool in BAKED_TOOLS:
        digest.update(f"{toolchain.tool_dir(tool, required=False).name}\n".encode())
    return digest.hexdigest()[:16]


def built_image_dir() -> Path:
    """The image the current recipe builds; the same key tools/build-image uses."""
    root = toolchain.checkout()
    if root is None:
        raise ConfigError(["vmkube:libvirt.baseImage: no vmkube checkout to take the node image from; set "
                           "baseImage to an image of your own, or VMKUBE_CHECKOUT to a checkout where "
                           "`make image` ran"])
    path = cache_dir() / "images" / f"debian12-{image_key(root)}"
    if not (path / "image.json").is_file():
        raise ConfigError([f"vmkube:libvirt.baseImage: the node image is not built yet ({path}); "
                           "run `make image`, or set baseImage to an image of your own"])
    return path
