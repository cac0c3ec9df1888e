"""tools/pulumi: what it sets up around the real CLI (a fake `pulumi` records it here)."""

from __future__ import annotations

import os
import subprocess

from tests.helpers import ROOT


def run(tmp_path, *args: str) -> dict[str, str]:
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "pulumi").write_text('#!/bin/sh\n[ "$1" = plugin ] && mkdir -p "$PULUMI_HOME/plugins" && exit 0\nenv\n')
    (fake / "pulumi").chmod(0o755)
    env = {**os.environ, "VMKUBE_PULUMI_BIN": str(fake), "PULUMI_HOME": str(tmp_path / "home"),
           "PULUMI_BACKEND_URL": f"file://{tmp_path}/state", "PULUMI_CONFIG_PASSPHRASE": "x"}
    env.pop("PULUMI_K8S_DELETE_UNREACHABLE", None)
    out = subprocess.run([str(ROOT / "tools" / "pulumi"), *args], capture_output=True, text=True, env=env, check=True)
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def test_destroy_drops_what_an_unreachable_cluster_held_and_up_does_not(tmp_path):
    assert run(tmp_path, "destroy", "--yes")["PULUMI_K8S_DELETE_UNREACHABLE"] == "true"
    assert "PULUMI_K8S_DELETE_UNREACHABLE" not in run(tmp_path, "up", "--yes")


def test_a_generated_passphrase_is_private(tmp_path):
    env = {**os.environ, "VMKUBE_CONFIG": str(tmp_path / "config"), "VMKUBE_PULUMI_BIN": str(tmp_path / "bin"),
           "PULUMI_HOME": str(tmp_path / "home"), "PULUMI_BACKEND_URL": f"file://{tmp_path}/state"}
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "pulumi").write_text("#!/bin/sh\nmkdir -p \"$PULUMI_HOME/plugins\"\n")
    (tmp_path / "bin" / "pulumi").chmod(0o755)
    for var in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"):
        env.pop(var, None)
    subprocess.run([str(ROOT / "tools" / "pulumi"), "version"], env=env, check=True, capture_output=True)
    assert (tmp_path / "config" / "passphrase").stat().st_mode & 0o077 == 0
    assert (tmp_path / "config").stat().st_mode & 0o077 == 0


def test_each_run_has_a_private_temporary_directory_removed_after(tmp_path):
    """The Kubernetes provider writes the cluster's admin kubeconfig into $TMPDIR whenever it
    starts and never removes it: each run's goes with the run, failed or not."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pulumi").write_text('#!/bin/sh\n[ "$1" = plugin ] && mkdir -p "$PULUMI_HOME/plugins" && exit 0\n'
                                 'echo "TMPDIR=$TMPDIR"; stat -c "MODE=%a" "$TMPDIR"\n'
                                 'echo admin > "$TMPDIR/kubeconfig123"; exit "$FAKE_RC"\n')
    (fake / "pulumi").chmod(0o755)
    shared = tmp_path / "shared"
    shared.mkdir()
    for rc in (0, 4):
        env = {**os.environ, "VMKUBE_PULUMI_BIN": str(fake), "PULUMI_HOME": str(tmp_path / "home"),
               "PULUMI_BACKEND_URL": f"file://{tmp_path}/state", "PULUMI_CONFIG_PASSPHRASE": "x",
               "TMPDIR": str(shared), "FAKE_RC": str(rc)}
        proc = subprocess.run([str(ROOT / "tools" / "pulumi"), "up"], capture_output=True, text=True, env=env)
        assert proc.returncode == rc, proc.stderr
        seen = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
        assert seen["TMPDIR"].startswith(f"{shared}/vmkube-pulumi.") and seen["MODE"] == "700", seen
        assert list(shared.iterdir()) == []
