"""What the operator's tools (`make conformance`, `make snapshot`, ...) need of a stack: its
outputs, its config, and SSH sessions to its nodes with their pinned host keys. Secrets
are read through the Pulumi CLI into this process only, never onto a command line."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vmkube.nodes.ssh import Endpoint, Session  # noqa: E402

PULUMI = ROOT / "tools" / "pulumi"


def pulumi(stack: str, *args: str) -> str:
    out = subprocess.run([str(PULUMI), *args, "--stack", stack], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"vmkube: error: pulumi {' '.join(args)} --stack {stack} failed:\n{out.stderr[-2000:]}")
    return out.stdout


def ssh_key(stack: str) -> str:
    """The stack's SSH private key: configured (vmkube:ssh.privateKey) or generated (in state)."""
    configured = subprocess.run([str(PULUMI), "config", "get", "--path", "vmkube:ssh.privateKey",
                                 "--stack", stack], capture_output=True, text=True)
    if configured.returncode == 0 and configured.stdout.strip():
        return configured.stdout
    state = json.loads(pulumi(stack, "stack", "export", "--show-secrets"))
    for res in state["deployment"]["resources"]:
        if res["type"].endswith("vmkube:SshKey"):
            key = res["outputs"]["private_key"]
            return json.loads(key["plaintext"]) if isinstance(key, dict) else key
    sys.exit(f"vmkube: error: stack {stack} holds no SSH key")


def stack_sessions(stack: str, role: str = "") -> list[Session]:
    """A session to each node of the stack (only those of ``role`` if given), control planes first."""
    nodes = json.loads(pulumi(stack, "stack", "output", "nodes", "--json"))
    host_keys = json.loads(pulumi(stack, "stack", "output", "hostKeys", "--json"))
    user = config_value(stack, "vmkube:ssh.user", "vmkube")
    port = int(config_value(stack, "vmkube:ssh.port", "22"))
    key = ssh_key(stack)
    return [Session(n["name"], Endpoint(n["ip"], port, user, host_keys[n["name"]]), key)
            for n in nodes if not role or n.get("role") == role]


def config_value(stack: str, path: str, default: str = "") -> str:
    """One key of the stack's config (``vmkube:etcd.snapshots.keep``), or the default when unset."""
    out = subprocess.run([str(PULUMI), "config", "get", "--path", path, "--stack", stack],
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else default


@contextlib.contextmanager
def private_file(text: str, name: str = "kubeconfig"):
    """``text`` in a file only this user can read (created 0600, never wider), removed after."""
    with tempfile.TemporaryDirectory(prefix="vmkube-") as tmp:
        path = Path(tmp) / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        yield path
