"""vmkube as a component in a Pulumi program of its own (examples/component): the
package built from pyproject.toml and installed apart from the repository, the
example previewed through the real engine with its own project and stack."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pulumi import automation as auto

from tests import workspace
from tests.helpers import ROOT

pytestmark = pytest.mark.engine


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    """vmkube installed from the repository into a directory of its own (its
    dependencies come from the project's virtualenv, already installed)."""
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                           str(ROOT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (site / "vmkube" / "stack" / "component.py").is_file()
    assert not (site / "tests").exists() and not (site / "__main__.py").exists()
    return site


def test_the_example_program_previews_with_the_installed_component(installed, tmp_path, pulumi_bin, node_image):
    program = tmp_path / "example"
    shutil.copytree(ROOT / "examples" / "component", program)
    (program / ".venv").symlink_to(ROOT / ".venv")
    env = {**workspace.engine_env(tmp_path, program), "PYTHONPATH": str(installed)}
    stack = auto.create_stack("lab", work_dir=str(program), opts=auto.LocalWorkspaceOptions(env_vars=env))
    stack.set_config("baseImage", auto.ConfigValue(str(node_image)))
    lines: list[str] = []
    preview = stack.preview(on_output=lines.append)
    text = "\n".join(lines)
    changes = preview.change_summary
    # Stack, Cluster, SSH key, 2 NodePools with their VmPools, Bootstrap, LeavingVms, k8s provider, 2 namespaces
    assert changes == {"create": 12}, text
    assert "vmkube:index:Cluster" in text and "kubernetes:core/v1:Namespace" in text, text
    # It imported the installed package, not the repository.
    out = subprocess.run([str(ROOT / ".venv/bin/python"), "-c", "import vmkube; print(vmkube.__file__)"],
                         capture_output=True, text=True, cwd=program, env={**os.environ, **env}).stdout
    assert out.startswith(str(installed)), out


def test_bad_arguments_name_the_args_field(installed, tmp_path, pulumi_bin, node_image):
    program = tmp_path / "example"
    shutil.copytree(ROOT / "examples" / "component", program)
    (program / ".venv").symlink_to(ROOT / ".venv")
    main = program / "__main__.py"
    main.write_text(main.read_text().replace("memory_mb=2048, disk_gb=10), labels", "memory_mb=512, disk_gb=10), labels"))
    env = {**workspace.engine_env(tmp_path, program), "PYTHONPATH": str(installed)}
    stack = auto.create_stack("lab", work_dir=str(program), opts=auto.LocalWorkspaceOptions(env_vars=env))
    stack.set_config("baseImage", auto.ConfigValue(str(node_image)))
    lines: list[str] = []
    with pytest.raises(auto.errors.CommandError) as err:
        stack.preview(on_output=lines.append)
    text = "\n".join(lines) + str(err.value)
    assert "invalid cluster arguments (1 problem)" in text, text
    assert "ClusterArgs.worker_pools[0].machine.memory_mb: must be at least 1024 (got 512)" in text, text
    assert "Traceback" not in text
