"""Fixtures that run the real Pulumi engine: the CLI tools/build makes (or a new
enough `pulumi` on PATH), a file:// backend and PULUMI_HOME in a temp dir,
and a copy of the project so that stack files written by Pulumi stay there."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import pytest
import yaml
from pulumi import automation as auto

from tests.helpers import ROOT

log = logging.getLogger("vmkube.tests")
PASSPHRASE = "vmkube-tests-passphrase"
PROJECT_FILES = ("Pulumi.yaml", "__main__.py", "requirements.txt", "infra", "workloads", "tools")


@pytest.fixture(scope="session")
def pulumi_bin(toolchain_bin: Path) -> Path:
    """The directory holding the pulumi CLI and its Python language host."""
    bin_dir = toolchain_bin
    pulumi = bin_dir / "pulumi"
    if not os.access(pulumi, os.X_OK):
        pytest.fail(f"tools/build reported {bin_dir} but it holds no pulumi executable", pytrace=False)
    version = subprocess.run([str(pulumi), "version"], capture_output=True, text=True).stdout.strip()
    log.info("pulumi binary: %s (pulumi version: %s)", pulumi, version)
    # The Automation API and the language host both look pulumi and python3 up on PATH.
    os.environ["PATH"] = os.pathsep.join([str(bin_dir), str(ROOT / ".venv" / "bin"), os.environ["PATH"]])
    return bin_dir


@pytest.fixture
def project(tmp_path: Path, pulumi_bin: Path) -> Path:
    """A copy of the project; the repo's own Pulumi.<stack>.yaml files stay untouched."""
    dest = tmp_path / "project"
    dest.mkdir()
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    return dest


@pytest.fixture
def engine_env(tmp_path: Path, project: Path) -> dict[str, str]:
    state = tmp_path / "state"
    state.mkdir()
    return {
        "PULUMI_BACKEND_URL": f"file://{state}",
        "PULUMI_HOME": str(tmp_path / "pulumi-home"),
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_RUNTIME_VIRTUALENV": str(project / ".venv"),
    }


StackFactory = Callable[..., auto.Stack]


@pytest.fixture
def make_stack(project: Path, engine_env: dict[str, str]) -> StackFactory:
    """Creates a stack of the project copy from an example file or given YAML text."""
    made: list[auto.Stack] = []

    def make(name: str, *, from_example: str | None = None, yaml_text: str | None = None,
             config: dict | None = None, secrets: dict[str, str] | None = None) -> auto.Stack:
        target = project / f"Pulumi.{name}.yaml"
        if from_example:
            shutil.copy2(ROOT / f"Pulumi.{from_example}.yaml", target)
        elif yaml_text is not None:
            target.write_text(yaml_text)
        elif config is not None:
            target.write_text(yaml.safe_dump({"config": {f"vmkube:{k}": v for k, v in config.items()}}))
        stack = auto.create_stack(name, work_dir=str(project),
                                  opts=auto.LocalWorkspaceOptions(env_vars=engine_env))
        for path, value in (secrets or {}).items():
            stack.set_config(f"vmkube:{path}", auto.ConfigValue(value, secret=True), path=True)
        made.append(stack)
        return stack

    yield make
    for stack in made:
        # Whatever a test left deployed goes, also when an assertion failed half-way.
        try:
            stack.destroy(on_output=lambda _l: None)
        except auto.errors.CommandError as exc:
            log.warning("destroy of %s after the test failed: %s", stack.name, exc)
