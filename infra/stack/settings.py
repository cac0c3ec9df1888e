"""Reads the stack's ``vmkube:`` config and validates it before anything is registered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from infra import config
from infra.errors import ConfigError
from infra.workloads import list_apps

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


def load_spec() -> config.ClusterSpec:
    """The validated spec, or a clean failure listing every problem (no traceback)."""
    values, secret = raw_config()
    try:
        return config.load(values, stack=pulumi.get_stack(), secret_keys=secret,
                           apps=list_apps(WORKLOADS_DIR))
    except ConfigError as exc:
        raise pulumi.RunError(exc.render()) from None
