"""Reads the stack's ``vmkube:`` config and validates it before anything is registered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from vmkube import config, toolchain
from vmkube.errors import ConfigError
from vmkube.workloads import Manifest, ManifestError, list_apps, resolve, served_kinds

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


def load_cluster_spec() -> config.ClusterSpec:
    """The stack's validated cluster spec, or a clean failure listing every problem by its key."""
    values, secret = raw_config()
    try:
        return config.load(values, stack=pulumi.get_stack(), secret_keys=secret, apps=list_apps(WORKLOADS_DIR))
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
