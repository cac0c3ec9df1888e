"""A stack written by an older vmkube still refreshes, updates and destroys.

tests/data/state-vsphere-0a3f911.json is the state of a VMs-only vcsim stack as
vmkube wrote it at commit 0a3f911, before the code moved from ``infra`` to
``vmkube``: its providers are pickled as ``infra.stack.keys.SshKeyProvider`` and
``infra.stack.vmpool.VmPoolProvider``, and its inputs have that version's shape.
It was exported with its secrets shown and every secret and per-run value replaced
by a placeholder ({{PASSWORD}}, {{PRIVATE_KEY_0}}, {{SERVER}}, ...); the test fills
in fresh values for a vcsim of its own and imports it into a new stack."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from pulumi import automation as auto

from tests.engine.test_vm_lifecycle import QUIET, vmkube_vms, vsphere_config
from tests.fixtures.vcsim import PASSWORD
from vmkube.sshkeys import generate_ed25519

pytestmark = pytest.mark.engine
SAVED = Path(__file__).resolve().parents[1] / "data" / "state-vsphere-0a3f911.json"
NODES = ["vc-cp-1", "vc-general-1"]


def fill(value, values: dict[str, str]):
    """Placeholders replaced inside every string, also inside secrets' JSON-encoded plaintext."""
    if isinstance(value, dict):
        return {k: fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, values) for v in value]
    if isinstance(value, str):
        if value[:1] in "[{\"":  # a secret's plaintext is JSON text
            try:
                return json.dumps(fill(json.loads(value), values))
            except ValueError:
                pass
        for placeholder, real in values.items():
            value = value.replace(placeholder, real)
    return value


def saved_state(sim) -> dict:
    text = SAVED.read_text()
    values = {"{{SERVER}}": sim.server, "{{CA_FILE}}": str(sim.ca.ca_path), "{{PASSWORD}}": PASSWORD}
    i = 0
    while f"{{{{PRIVATE_KEY_{i}}}}}" in text:
        pair = generate_ed25519()
        b64 = pair.public_openssh.split()[1]
        values.update({f"{{{{PRIVATE_KEY_{i}}}}}": pair.private_openssh, f"{{{{PUBLIC_B64_{i}}}}}": b64,
                       f"{{{{PUBLIC_ID_{i}}}}}": b64[-16:]})
        i += 1
    assert i == 3, "the saved stack holds the stack key and two host keys"
    return fill(json.loads(text), values)


def imported(make_stack, sim, name: str) -> auto.Stack:
    cfg = vsphere_config(sim, workerPools=[{"name": "general", "count": 1, "cpus": 1, "memoryMb": 1024,
                                            "diskGb": 10}])
    stack = make_stack(name, config=cfg, secrets={"vsphere.password": PASSWORD})
    state = saved_state(sim)
    pickled = {base64.b64decode(r["inputs"]["__provider"]).split(b"\x94")[0][-30:]
               for r in state["deployment"]["resources"] if "__provider" in (r.get("inputs") or {})}
    assert all(b"infra.stack." in p for p in pickled) and len(pickled) == 2, pickled
    stack.import_stack(auto.Deployment(version=state["version"], deployment=state["deployment"]))
    return stack


def test_an_old_state_refreshes_updates_and_destroys(vcsim, guest_agent, make_stack):
    stack = imported(make_stack, vcsim, "vc")
    # Its VMs lived in another simulator: the refresh, run by the old pickled providers, finds them gone.
    refreshed = stack.refresh(**QUIET)
    assert refreshed.summary.resource_changes.get("update") == 2, refreshed.summary.resource_changes
    up = stack.up(**QUIET)
    assert up.summary.resource_changes == {"same": 5, "update": 2}, up.summary.resource_changes
    assert sorted(vmkube_vms(vcsim)) == NODES
    assert [n["power"] for n in up.outputs["nodes"].value] == ["on", "on"]
    assert stack.up(**QUIET).summary.resource_changes == {"same": 7}
    stack.destroy(**QUIET)
    assert vmkube_vms(vcsim) == {}


def test_an_old_state_destroys_with_its_own_providers(vcsim, guest_agent, make_stack):
    # Straight to destroy: every delete runs the provider unpickled from the old state.
    stack = imported(make_stack, vcsim, "vc")
    destroyed = stack.destroy(**QUIET)
    assert destroyed.summary.resource_changes.get("delete") == 7, destroyed.summary.resource_changes
    assert vmkube_vms(vcsim) == {}
