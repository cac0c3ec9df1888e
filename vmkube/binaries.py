"""Kubernetes binaries from a URL mirror, fetched once onto this machine.

The machine running `pulumi up` downloads each binary into a cache keyed by its
sha256 and the bootstrap uploads it from there like any other local binary, so
nodes need no route to the mirror and a warm run makes no request at all. A
file enters the cache only after its digest matched (written aside, renamed
on success), and is hashed again whenever it is used.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import string
import tempfile
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Mapping

from vmkube.errors import DownloadError
from vmkube.vms.base_image import cache_dir

log = logging.getLogger("vmkube.binaries")
URL_KEY = "vmkube:kubernetes.binaries.url"
SHA256_KEY = "vmkube:kubernetes.binaries.sha256"
PLACEHOLDERS = ("version", "name", "arch")
ARCH = "amd64"  # the binaries the toolchain builds are amd64 too; one architecture per cluster
TIMEOUT_S = 60  # per connect and per read: a slow mirror is fine, a silent one is not
CHUNK = 1 << 20
WORKERS = 4


def cache() -> Path:
    return cache_dir() / "binaries"


def placeholders(template: str) -> list[str]:
    """The ``{fields}`` a url template uses; ValueError when its braces do not pair."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def urls_for(template: str, version: str, names: list[str] | tuple[str, ...], arch: str = ARCH) -> dict[str, str]:
    """Binary name -> URL. A template without ``{name}`` is a directory holding every binary."""
    if "{name}" not in template:
        template = template.rstrip("/") + "/{name}"
    return {name: template.format(version=version, name=name, arch=arch) for name in names}


def fetch(urls: Mapping[str, str], sha256: Mapping[str, str], into: Path | None = None) -> dict[str, Path]:
    """Binary name -> verified file in the cache; downloads only what the cache lacks, in parallel."""
    into = into or cache()
    into.mkdir(parents=True, exist_ok=True, mode=0o700)
    into.chmod(0o700)  # also when an older vmkube made it with the default mode
    paths = {name: into / sha256[name] for name in urls}
    # A file is re-hashed each time it is used: its name is no proof (a disk error, or
    # someone with access to the cache, may have changed it since it was verified).
    missing = [name for name in urls if not _intact(paths[name], sha256[name])]
    if not missing:
        return paths

    def one(name: str) -> str | None:
        try:
            _download(name, urls[name], sha256[name], paths[name])
            return None
        except DownloadError as exc:
            return exc.problems[0]

    with ThreadPoolExecutor(min(WORKERS, len(missing))) as pool:
        problems = [p for p in pool.map(one, missing) if p]
    if problems:
        raise DownloadError(problems)
    return paths


def _intact(path: Path, expected: str) -> bool:
    """True when ``path`` holds the bytes of ``expected``; a damaged copy is deleted."""
    if not path.is_file():
        return False
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    if digest.hexdigest() == expected:
        return True
    log.warning("%s: cached copy does not match its sha256 any more; fetching it again", path.name)
    path.unlink()
    return False


def _download(name: str, url: str, expected: str, dest: Path) -> None:
    log.info("%s: downloading %s", name, url)
    request = urllib.request.Request(url, headers={"User-Agent": "vmkube"})
    # Beside its final name, so the rename that publishes it is atomic.
    fd, part = tempfile.mkstemp(dir=dest.parent, prefix=f".{name}.", suffix=".part")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
        got = digest.hexdigest()
        if got != expected:
            raise DownloadError([f"{SHA256_KEY}.{name}: {url} has sha256 {got}, expected {expected}; "
                                 "fix the digest, or the file on the mirror"])
        os.chmod(part, 0o700)
        os.replace(part, dest)
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError([f"{URL_KEY}: downloading {name} from {url} failed: {_why(exc)}"]) from None
    finally:
        if os.path.exists(part):
            os.unlink(part)


def _why(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"no answer within {TIMEOUT_S} s"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__
