"""Images vmkube builds here and preloads into containerd on every node: no
registry is reachable from the nodes, and a demo must run offline."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from infra import oci

PAUSE_IMAGE = "vmkube.local/pause:3.10"
HELLO_REPO = "vmkube.local/hello"
HELLO_TAGS = ("1.0", "1.1")  # two, so that a tag change in a stack rolls out for real
TAR_DIR = "/var/lib/vmkube/images"


def tar_path(ref: str) -> str:
    """Where a node keeps the image's archive: one file per image and tag."""
    name = ref.rsplit("/", 1)[-1].replace(":", "-")
    return f"{TAR_DIR}/{name}.tar"


def preloaded(tool_dirs: Mapping[str, str]) -> dict[str, bytes]:
    """Image reference -> docker-archive, from the toolchain's pause and hello builds."""
    pause = (Path(tool_dirs["pause"]) / "pause").read_bytes()
    images = {PAUSE_IMAGE: oci.image_tar(PAUSE_IMAGE, {"pause": (pause, 0o755)}, ["/pause"])}
    if tool_dirs.get("hello"):
        hello = (Path(tool_dirs["hello"]) / "hello").read_bytes()
        for tag in HELLO_TAGS:
            ref = f"{HELLO_REPO}:{tag}"
            images[ref] = oci.image_tar(ref, {"hello": (hello, 0o755)}, ["/hello"],
                                        env=["PATH=/", f"HELLO_VERSION={tag}"])
    return images
