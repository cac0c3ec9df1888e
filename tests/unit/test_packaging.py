"""The package and the program pin the same dependencies, and the core imports no pulumi."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib

from tests.helpers import ROOT


def test_the_package_pins_what_the_program_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    assert sorted(project["dependencies"]) == sorted(p for p in pins if p)


def test_only_the_stack_package_imports_pulumi():
    offenders = []
    for path in (ROOT / "vmkube").rglob("*.py"):
        if "stack" in path.relative_to(ROOT / "vmkube").parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "pulumi" or n.startswith(("pulumi.", "pulumi_")) for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_importing_the_core_does_not_load_pulumi():
    code = ("import sys, vmkube, vmkube.config, vmkube.contracts, vmkube.bootstrap.converge, vmkube.vms.pool; "
            "print('pulumi' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_the_program_finds_the_image_tools_build_image_makes(tmp_path, monkeypatch):
    from vmkube.vms.base_image import built_image_dir, image_key
    # The script's own key (its text and the toolchain builds it bakes in), not a copy of its rule.
    key = subprocess.run([str(ROOT / "tools" / "build-image"), "--key"], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert len(key) == 16 and image_key(ROOT) == key
    image = tmp_path / "images" / f"debian12-{key}"
    image.mkdir(parents=True)
    (image / "image.json").write_text("{}")
    monkeypatch.setenv("VMKUBE_CACHE", str(tmp_path))
    assert built_image_dir() == image
