"""Shared by the test packages: where the project is, how its example stacks read,
and the Deployments tests write and look for."""

from __future__ import annotations

import copy
import json
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


def deployment_manifest(name: str, replicas: int) -> str:
    """A Deployment of the demo image; on kwok's nodes its pods run without pulling it."""
    labels = {"app": name}
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": name, "image": "vmkube.local/hello:1.0"}]}}},
    })


def find_deployment(listing: str, name: str) -> dict | None:
    """The named Deployment in `kubectl get deployments -o json` output, or None."""
    found = [d for d in json.loads(listing)["items"] if d["metadata"]["name"] == name]
    return found[0] if found else None
