"""The real Pulumi engine (Automation API, local program, file:// backend) runs
the project: previews of every example stack, a bad stack's clean failure, and
a full up / up-again / destroy of the local stack with its generated SSH key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pulumi import automation as auto

from tests.helpers import EXAMPLE_SECRETS

pytestmark = pytest.mark.engine


class Captured:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.mark.parametrize("stack_name,creates", [("local", 5), ("dev", 5), ("prod", 6)])
def test_preview_of_each_example_stack(make_stack, stack_name, creates):
    secrets = EXAMPLE_SECRETS.get(stack_name, {})
    stack = make_stack(stack_name, from_example=stack_name, secrets=secrets)
    out = Captured()
    result = stack.preview(on_output=out)
    # Stack + Cluster + SshKey + one NodePool for the control plane and each worker pool.
    assert result.change_summary == {"create": creates}, out.text
    for value in secrets.values():
        assert value not in out.text and value not in result.stdout


BAD_STACK = """\
config:
  vmkube:hypervisor: libvirt
  vmkube:controlPlane:
    count: 2
  vmkube:workerPools:
    - name: worker
      memoryMb: 512
    - name: worker
  vmkube:kubernetes:
    podCidr: 10.96.0.0/16
  vmkube:workloads:
    helo: {}
  vmkube:sshUser: admin
"""


def test_preview_of_a_bad_stack_fails_naming_every_key(make_stack):
    stack = make_stack("bad", yaml_text=BAD_STACK)
    with pytest.raises(auto.errors.CommandError) as err:
        stack.preview(on_output=lambda _l: None)
    text = str(err.value)
    for line in [
        "vmkube:controlPlane.count: must be 1 or 3 (got 2)",
        "vmkube:workerPools[0].memoryMb: must be at least 1024 (got 512)",
        "vmkube:workerPools[1].name: duplicate pool name 'worker' (also workerPools[0])",
        "vmkube:kubernetes.serviceCidr: overlaps vmkube:kubernetes.podCidr",
        "vmkube:workloads.helo: unknown app; workloads/ has: hello",
        "vmkube:sshUser: unknown key",
    ]:
        assert line in text, text
    assert "Traceback" not in text


def stored_state(engine_env, stack_name: str) -> str:
    """The checkpoint exactly as the file backend keeps it (export would decrypt)."""
    root = Path(engine_env["PULUMI_BACKEND_URL"].removeprefix("file://"))
    return (root / ".pulumi" / "stacks" / "vmkube" / f"{stack_name}.json").read_text()


def test_up_again_and_destroy_of_the_local_stack(make_stack, engine_env):
    stack = make_stack("local", from_example="local")
    first = stack.up(on_output=lambda _l: None)
    assert first.summary.result == "succeeded"
    assert first.summary.resource_changes == {"create": 5}
    nodes = first.outputs["nodes"].value
    assert [n["name"] for n in nodes] == ["local-cp-1", "local-worker-1"]
    public = first.outputs["sshPublicKey"].value
    assert public.startswith("ssh-ed25519 ") and public.endswith(" vmkube-local")

    again = stack.up(on_output=lambda _l: None)
    assert again.summary.resource_changes == {"same": 5}
    assert again.outputs["sshPublicKey"].value == public  # the key is kept, not regenerated

    # The generated private key is in state only as ciphertext.
    raw = stored_state(engine_env, "local")
    resources = json.loads(raw)["checkpoint"]["latest"]["resources"]
    key = [r for r in resources if r["type"].endswith("vmkube:SshKey")][0]
    assert set(key["outputs"]["private_key"]) == {"4dabf18193072939515e22adb298388d", "ciphertext"}
    assert "PRIVATE KEY" not in raw

    gone = stack.destroy(on_output=lambda _l: None)
    assert gone.summary.resource_changes == {"delete": 5}
    assert stack.export_stack().deployment.get("resources") in (None, [])
