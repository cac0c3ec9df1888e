"""Where a cluster's node binaries and preloaded images come from, as the program sees it.

A missing toolchain fails `up` before anything is touched, but only warns in a
preview: a pull request's preview runs without the toolchain.
"""

from __future__ import annotations

from pathlib import Path

import pulumi

from vmkube import binaries, config, toolchain
from vmkube.bootstrap import snapshot
from vmkube.contracts import AddonSettings, BinarySource, SnapshotPolicy
from vmkube.errors import ConfigError

HELLO_APP = "hello"
# Add-on -> the toolchain build whose binary its preloaded image holds.
ADDON_TOOLS = {"coredns": "coredns", "metrics-server": "metrics-server", "network-policy": "kube-network-policies"}


def _enabled(spec: config.ClusterSpec, addon: str) -> bool:
    """Only the add-ons the stack runs are packed and uploaded (each image is tens of MB)."""
    addons = spec.kubernetes.addons
    return {"metrics-server": addons.metrics_server, "network-policy": addons.network_policy}.get(addon, True)


def preloads(spec: config.ClusterSpec) -> bool:
    """Whether the nodes get the add-on images preloaded (else they pull them from the
    image repository): by default when the binaries come from the toolchain too."""
    chosen = spec.kubernetes.preload_images
    return chosen if chosen is not None else spec.kubernetes.binaries.source == "toolchain"


def addon_settings(spec: config.ClusterSpec) -> AddonSettings:
    k = spec.kubernetes
    return AddonSettings(image_repository=k.image_repository, preload=preloads(spec),
                         coredns_replicas=k.addons.coredns_replicas or 0, metrics_server=k.addons.metrics_server,
                         network_policy=k.addons.network_policy)


def snapshot_policy(spec: config.ClusterSpec, stack: str) -> SnapshotPolicy:
    """Snapshots before disruptive steps go to vmkube's data directory on this machine,
    checked by the toolchain's etcdutl. Without one (vmkube installed without a checkout
    that ran `make toolchain`) none are taken, and `up` says so."""
    etcdutl = toolchain.tool_dir("etcd", required=False) / "etcdutl"
    if not etcdutl.is_file():
        pulumi.log.warn(f"cluster {spec.name}: no etcdutl in the toolchain (make toolchain), so no etcd snapshot "
                        "is taken before disruptive steps")
        return SnapshotPolicy()
    return SnapshotPolicy(dir=str(snapshot.directory(snapshot.data_dir(), stack, spec.name)),
                          keep=spec.etcd.snapshots_keep, etcdutl=str(etcdutl))


def tool(name: str) -> Path:
    try:
        return toolchain.tool_dir(name)
    except ConfigError as exc:
        if not pulumi.runtime.is_dry_run():
            raise
        pulumi.log.warn(exc.problems[0])
        return toolchain.tool_dir(name, required=False)


def binary_source(spec: config.ClusterSpec, apps: tuple[str, ...] = ()) -> BinarySource:
    """The toolchain's build, the stack's directory, or a mirror; the pod sandbox and, when
    the stack runs it, the demo app come from the toolchain (built here, preloaded on nodes)."""
    if not spec.kubernetes.install:
        return BinarySource()
    source = spec.kubernetes.binaries
    images = {"pause": str(tool("pause")), "hello": str(tool("hello")) if HELLO_APP in apps else "",
              "addons": {addon: str(tool(t)) for addon, t in ADDON_TOOLS.items() if _enabled(spec, addon)}
              if preloads(spec) else {}}
    if source.source == "url":
        # Only the URLs here: the download happens in the bootstrap, never in a preview.
        urls = binaries.urls_for(source.url, spec.kubernetes.version, config.KUBE_BINARIES)
        return BinarySource(source="url", urls=urls, sha256=dict(source.sha256), **images)
    dirs = (source.dir,) if source.source == "dir" else tuple(str(tool(t)) for t in ("kubernetes", "etcd"))
    return BinarySource(source=source.source, dirs=dirs, **images)
