"""Fixtures that run the real Pulumi engine: the CLI tools/build makes, a
file:// backend and PULUMI_HOME in a temp dir, and a copy of the project."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest
from pulumi import automation as auto

from tests import workspace
from tests.helpers import ROOT

log = logging.getLogger("vmkube.tests")


@pytest.fixture(scope="session")
def pulumi_bin(toolchain_bin: Path) -> Path:
    """The directory holding the pulumi CLI and its Python language host."""
    pulumi = toolchain_bin / "pulumi"
    if not os.access(pulumi, os.X_OK):
        pytest.fail(f"tools/build reported {toolchain_bin} but it holds no pulumi executable", pytrace=False)
    version = subprocess.run([str(pulumi), "version"], capture_output=True, text=True).stdout.strip()
    log.info("pulumi binary: %s (pulumi version: %s)", pulumi, version)
    # The Automation API and the language host both look pulumi and python3 up on PATH.
    os.environ["PATH"] = os.pathsep.join([str(toolchain_bin), str(ROOT / ".venv" / "bin"), os.environ["PATH"]])
    return toolchain_bin


@pytest.fixture
def project(tmp_path: Path, pulumi_bin: Path) -> Path:
    return workspace.copy_project(tmp_path / "project")


@pytest.fixture
def engine_env(tmp_path: Path, project: Path) -> Iterator[dict[str, str]]:
    """The engine's environment; afterwards, its private temporary directory goes (the
    Kubernetes provider writes a cluster's admin kubeconfig there on every start), and
    none of those may have landed in the shared one."""
    shared = Path(tempfile.gettempdir())
    before = set(shared.glob("kubeconfig*"))
    env = workspace.engine_env(tmp_path, project)
    yield env
    shutil.rmtree(env["TMPDIR"], ignore_errors=True)
    leaked = sorted(str(p) for p in set(shared.glob("kubeconfig*")) - before)
    assert leaked == [], f"kubeconfig files left in {shared}: {leaked}"


StackFactory = Callable[..., auto.Stack]


@pytest.fixture
def make_stack(project: Path, engine_env: dict[str, str]) -> StackFactory:
    """Creates stacks of the project copy; destroys whatever they still hold afterwards."""
    made: list[auto.Stack] = []

    def make(name: str, **kw) -> auto.Stack:
        stack = workspace.create_stack(project, engine_env, name, **kw)
        made.append(stack)
        return stack

    yield make
    for stack in made:
        # Whatever a test left deployed goes, also when an assertion failed half-way.
        try:
            workspace.destroy(stack)
        except auto.errors.CommandError as exc:
            log.warning("destroy of %s after the test failed: %s", stack.name, exc)
