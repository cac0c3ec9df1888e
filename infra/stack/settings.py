"""Reads the stack's ``vmkube:`` config and validates it before anything is registered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from infra import binaries, config
from infra.errors import ConfigError
from infra.hypervisors import connect
from infra import toolchain
from infra.workloads import Manifest, ManifestError, list_apps, resolve, served_kinds

from .cluster import ClusterArgs

WORKLOADS_DIR = Path(__file__).resolve().parents[2] / "workloads"


def raw_config() -> tuple[dict[str, Any], set[str]]:
    """All ``vmkube:`` keys of the running stack, decoded, and which of them are secret."""
    prefix = f"{config.NAMESPACE}:"
    values: dict[str, Any] = {}
    # The SDK offers no public listing of config keys; unknown keys must be caught, so read the map.
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    for key, value in merged.items():
        if key.startswith(prefix):
            values[key[len(prefix):]] = _decode(value)
    secret = {k[len(prefix):] for k in runtime_config._SECRET_KEYS.get() if k.startswith(prefix)}
    secret |= {k[len(prefix):] for k in runtime_config.get_config_secret_keys_env() if k.startswith(prefix)}
    return values, secret


def _decode(value: Any) -> Any:
    """Structured config reaches the program as JSON text; scalars stay as written."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def binaries_for(spec: config.ClusterSpec) -> dict[str, Any]:
    """Where the node binaries come from: the toolchain's build, the stack's directory, or a mirror."""
    if not spec.kubernetes.install:
        return {}
    source = spec.kubernetes.binaries
    # Images built here and preloaded on the nodes: the pod sandbox, and the demo app when the stack runs it.
    images = {"pause": str(_tool("pause")),
              "hello": str(_tool("hello")) if any(w.app == "hello" for w in spec.workloads) else ""}
    if source.source == "url":
        # Only the URLs here: the download happens in the bootstrap, never in a preview.
        urls = binaries.urls_for(source.url, spec.kubernetes.version, config.KUBE_BINARIES)
        return {"source": "url", "urls": urls, "sha256": dict(source.sha256), **images}
    dirs = [source.dir] if source.source == "dir" else [str(_tool(t)) for t in ("kubernetes", "etcd")]
    return {"source": source.source, "dirs": dirs, **images}


def _tool(tool: str) -> Path:
    """A toolchain directory; missing, it fails `up` before anything is touched, but
    only warns in a preview (a pull request's preview runs without the toolchain)."""
    try:
        return toolchain.tool_dir(tool)
    except ConfigError as exc:
        if not pulumi.runtime.is_dry_run():
            raise
        pulumi.log.warn(exc.problems[0])
        return toolchain.tool_dir(tool, required=False)


def load_cluster_args() -> ClusterArgs:
    """The validated spec and where its VMs go, or a clean failure listing every problem."""
    values, secret = raw_config()
    try:
        spec = config.load(values, stack=pulumi.get_stack(), secret_keys=secret,
                           apps=list_apps(WORKLOADS_DIR))
        return ClusterArgs(spec=spec, hypervisor=connect.settings_for(spec), image=connect.image_for(spec),
                           binaries=binaries_for(spec))
    except ConfigError as exc:
        raise pulumi.RunError(exc.render()) from None


def load_apps(spec: config.ClusterSpec | config.AppsStackSpec) -> dict[str, list[Manifest]]:
    """The stack's apps, checked and with its overrides applied, or a clean failure listing every problem."""
    if not spec.workloads:
        return {}
    # Checked against the API of the Kubernetes version the toolchain builds (the default version).
    version = spec.kubernetes.version if isinstance(spec, config.ClusterSpec) else config.KubernetesSpec().version
    swagger = toolchain.tool_dir("kubernetes", required=False) / "swagger.json"
    served = served_kinds(swagger) if swagger.is_file() else None
    if served is None:
        pulumi.log.warn(f"workloads: not checked against Kubernetes {version}'s API: its spec "
                        f"is built with the toolchain (`make toolchain`)")
    try:
        return resolve(WORKLOADS_DIR, spec.workloads, served, version)
    except ManifestError as exc:
        raise pulumi.RunError(str(exc)) from None


def load_apps_stack() -> config.AppsStackSpec | None:
    """The spec of a workloads-only stack (``vmkube:clusterStack`` set), else None."""
    values, _secret = raw_config()
    if "clusterStack" not in values:
        return None
    try:
        return config.load_apps_stack(values, apps=list_apps(WORKLOADS_DIR))
    except ConfigError as exc:
        raise pulumi.RunError(exc.render()) from None
