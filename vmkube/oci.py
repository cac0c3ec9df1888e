"""Container images as docker-archive tarballs, built in Python from files.

No registry is reachable from the nodes: images vmkube needs (the pod
sandbox, demo apps) are built here and imported with `ctr images import`.
The output is deterministic for the same inputs (fixed mtimes, sorted).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from typing import Mapping


def _tar(files: Mapping[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        made: set[str] = set()
        for path in sorted(files):
            data, mode = files[path]
            parts = path.lstrip("/").split("/")[:-1]
            for depth in range(1, len(parts) + 1):  # each parent directory once, before its files
                parent = "/".join(parts[:depth])
                if parent not in made:
                    made.add(parent)
                    folder = tarfile.TarInfo(parent)
                    folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, 0
                    tar.addfile(folder)
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def image_tar(ref: str, files: Mapping[str, tuple[bytes, int]], entrypoint: list[str],
              env: list[str] | None = None, arch: str = "amd64") -> bytes:
    """A one-layer image named ``ref`` (repo:tag) holding ``files`` (path -> (bytes, mode))."""
    layer = _tar(files)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": arch, "os": "linux",
        "config": {"Entrypoint": entrypoint, "Env": env or ["PATH=/"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "vmkube"}],
    }, sort_keys=True).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_name = diff_id.split(":")[1] + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [ref], "Layers": [layer_name]}]).encode()
    return _tar({config_name: (config, 0o644), layer_name: (layer, 0o644), "manifest.json": (manifest, 0o644)})
