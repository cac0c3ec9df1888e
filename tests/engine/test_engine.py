"""The real Pulumi engine (Automation API, local program, file:// backend) runs
the project: previews of every example stack and a bad stack's clean failure.
Full up / up again / destroy cycles are in test_vm_lifecycle.py."""

from __future__ import annotations

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


@pytest.mark.parametrize("stack_name,creates", [("local", 12), ("dev", 12), ("prod", 14)])
def test_preview_of_each_example_stack(make_stack, stack_name, creates):
    secrets = EXAMPLE_SECRETS.get(stack_name, {})
    stack = make_stack(stack_name, from_example=stack_name, secrets=secrets)
    out = Captured()
    result = stack.preview(on_output=out)
    # Stack + Cluster + SshKey + a NodePool and its VmPool for the control plane and each worker
    # pool + the Kubernetes bootstrap.
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
