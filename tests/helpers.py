"""Shared by the test packages: where the project is and how its example stacks read."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_STACKS = ("local", "dev", "prod")
# Values a user sets with `pulumi config set --secret`; the example files leave them out.
EXAMPLE_SECRETS = {"dev": {"vsphere.password": "dev-vcenter-password"},
                   "prod": {"vsphere.password": "prod-vcenter-password"}}


def stack_file(stack: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]


def example_raw(stack: str) -> dict[str, Any]:
    """An example stack's vmkube: keys as the program sees them, secrets filled in."""
    raw = {k.split(":", 1)[1]: copy.deepcopy(v) for k, v in stack_file(stack).items()
           if k.startswith("vmkube:")}
    for path, value in EXAMPLE_SECRETS.get(stack, {}).items():
        section, key = path.split(".")
        raw.setdefault(section, {})[key] = value
    return raw


def example_secret_keys(stack: str) -> set[str]:
    return {path.split(".")[0] for path in EXAMPLE_SECRETS.get(stack, {})}
