"""Binaries from a URL mirror (a real HTTP server on 127.0.0.1): downloaded once,
verified while streaming, and every failure names its config key and URL."""

from __future__ import annotations

import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vmkube import binaries
from vmkube.bootstrap.converge import local_binaries
from vmkube.contracts import BinarySource
from vmkube.config import KUBE_BINARIES
from vmkube.errors import DownloadError

VERSION = "1.34.4"


class Mirror:
    """Serves files under /v<version>/bin/linux/amd64/<name> and counts requests."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[str] = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mirror.requests.append(self.path)
                body = mirror.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def template(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/v{{version}}/bin/linux/{{arch}}/{{name}}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def fake_binary(name: str) -> bytes:
    # Larger than one read chunk for one of them, so streaming is exercised.
    return f"#!/bin/sh\necho {name}\n".encode() * (80_000 if name == "kubelet" else 1)


@pytest.fixture
def served():
    files = {name: fake_binary(name) for name in KUBE_BINARIES}
    mirror = Mirror({f"/v{VERSION}/bin/linux/amd64/{name}": body for name, body in files.items()})
    yield mirror, {name: hashlib.sha256(body).hexdigest() for name, body in files.items()}
    mirror.close()


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never the user's cache; and no proxy between the tests and 127.0.0.1."""
    monkeypatch.setenv("VMKUBE_CACHE", str(tmp_path / "cache"))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "cache" / "binaries"


def test_downloads_verify_and_a_warm_run_makes_no_request(served, own_cache):
    mirror, digests = served
    urls = binaries.urls_for(mirror.template, VERSION, KUBE_BINARIES)
    source = BinarySource(source="url", urls=urls, sha256=digests, pause="/unused")

    paths = local_binaries(source)
    assert set(paths) == set(KUBE_BINARIES)
    for name, path in paths.items():
        assert path == own_cache / digests[name]
        assert path.read_bytes() == fake_binary(name)
    assert sorted(mirror.requests) == sorted(f"/v{VERSION}/bin/linux/amd64/{n}" for n in KUBE_BINARIES)
    assert sorted(p.name for p in own_cache.iterdir()) == sorted(digests.values())  # no temp files left

    mirror.requests.clear()
    assert local_binaries(source) == paths
    assert mirror.requests == []


def test_only_missing_binaries_are_downloaded(served, own_cache):
    mirror, digests = served
    urls = binaries.urls_for(mirror.template, VERSION, KUBE_BINARIES)
    binaries.fetch(urls, digests)
    (own_cache / digests["etcd"]).unlink()
    mirror.requests.clear()
    binaries.fetch(urls, digests)
    assert mirror.requests == [f"/v{VERSION}/bin/linux/amd64/etcd"]


def test_a_checksum_mismatch_names_the_key_and_leaves_nothing_in_the_cache(served, own_cache):
    mirror, digests = served
    urls = binaries.urls_for(mirror.template, VERSION, ["kubelet"])
    wrong = "0" * 64
    with pytest.raises(DownloadError) as err:
        binaries.fetch(urls, {"kubelet": wrong})
    got = digests["kubelet"]
    assert err.value.problems == [
        f"vmkube:kubernetes.binaries.sha256.kubelet: {urls['kubelet']} has sha256 {got}, expected {wrong}; "
        "fix the digest, or the file on the mirror"]
    assert list(own_cache.iterdir()) == []


def test_not_found_names_the_key_and_url(served, own_cache):
    mirror, digests = served
    urls = binaries.urls_for(mirror.template, "1.99.0", ["kubectl", "etcd"])
    with pytest.raises(DownloadError) as err:
        binaries.fetch(urls, digests)
    assert err.value.problems == [
        f"vmkube:kubernetes.binaries.url: downloading kubectl from {urls['kubectl']} failed: HTTP 404 Not Found",
        f"vmkube:kubernetes.binaries.url: downloading etcd from {urls['etcd']} failed: HTTP 404 Not Found"]
    assert str(err.value).startswith("could not fetch the Kubernetes binaries (2 problems):\n  vmkube:")
    assert list(own_cache.iterdir()) == []


def test_connection_refused_names_the_key_and_url(own_cache):
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/k8s/kubelet"
    with pytest.raises(DownloadError) as err:
        binaries.fetch({"kubelet": url}, {"kubelet": "a" * 64})
    assert err.value.problems == [
        f"vmkube:kubernetes.binaries.url: downloading kubelet from {url} failed: Connection refused"]
    assert list(own_cache.iterdir()) == []


def test_url_templates():
    assert binaries.urls_for("https://dl.k8s.io/release/v{version}/bin/linux/{arch}/{name}", "1.34.4",
                             ["kubelet"]) == {"kubelet": "https://dl.k8s.io/release/v1.34.4/bin/linux/amd64/kubelet"}
    # Without {name} the URL is the directory holding every binary.
    assert binaries.urls_for("https://mirror.example/k8s/{version}/", "1.34.4", ["etcd"]) == {
        "etcd": "https://mirror.example/k8s/1.34.4/etcd"}


def test_a_cached_binary_changed_since_it_was_verified_is_fetched_again(served, own_cache):
    mirror, digests = served
    urls = binaries.urls_for(mirror.template, VERSION, KUBE_BINARIES)
    paths = binaries.fetch(urls, digests)
    paths["kubelet"].write_bytes(b"#!/bin/sh\necho swapped\n")  # same name, other bytes
    mirror.requests.clear()
    again = binaries.fetch(urls, digests)
    assert mirror.requests == [f"/v{VERSION}/bin/linux/amd64/kubelet"]
    assert again["kubelet"].read_bytes() == fake_binary("kubelet")


def test_the_cache_is_private_to_this_user(served, own_cache):
    mirror, digests = served
    paths = binaries.fetch(binaries.urls_for(mirror.template, VERSION, KUBE_BINARIES), digests)
    assert own_cache.stat().st_mode & 0o077 == 0
    assert all(p.stat().st_mode & 0o022 == 0 for p in paths.values())  # nobody else may swap a binary
