"""A throwaway copy of the project with its own Pulumi backend, for the engine
tests and the benchmarks: the repo's Pulumi.<stack>.yaml files stay untouched."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml
from pulumi import automation as auto

from tests.helpers import ROOT

PASSPHRASE = "vmkube-tests-passphrase"
PROJECT_FILES = ("Pulumi.yaml", "__main__.py", "requirements.txt", "vmkube", "infra", "workloads", "tools")
# tools/build lays each of these out like $PULUMI_HOME/plugins.
PLUGIN_TOOLS = ("pulumi-resource-kubernetes",)


def copy_project(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    return dest


def install_plugins(home: Path) -> None:
    """Gives a PULUMI_HOME the resource plugins tools/build made, where
    `pulumi plugin install` would put them, as symbolic links: the engine must
    not download any, and a copy of each per test would cost ~170 MB."""
    for tool in PLUGIN_TOOLS:
        out = subprocess.run([str(ROOT / "tools" / "build"), "--tool-dir", tool],
                             capture_output=True, text=True, check=True)
        src = Path(out.stdout.strip())
        if not (src / ".complete").is_file():
            raise RuntimeError(f"{tool} is not built yet: run tools/build")
        for plugin in src.glob("*-v*"):
            dest = home / "plugins" / plugin.name
            dest.mkdir(parents=True, exist_ok=True)
            for binary in plugin.iterdir():
                (dest / binary.name).unlink(missing_ok=True)
                (dest / binary.name).symlink_to(binary)


def engine_env(base: Path, project: Path) -> dict[str, str]:
    state = base / "state"
    state.mkdir(parents=True, exist_ok=True)
    install_plugins(base / "pulumi-home")
    # The engine's and its plugins' own, as tools/pulumi gives each run (the Kubernetes
    # provider leaves a kubeconfig in $TMPDIR every time it starts).
    tmp = base / "tmp"
    tmp.mkdir(mode=0o700, exist_ok=True)
    return {
        "TMPDIR": str(tmp),
        "PULUMI_BACKEND_URL": f"file://{state}",
        "PULUMI_HOME": str(base / "pulumi-home"),
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_RUNTIME_VIRTUALENV": str(project / ".venv"),
        # The etcd snapshots `up` takes before disruptive steps: the test's, gone with it.
        "VMKUBE_DATA": str(base / "data"),
    }


def create_stack(project: Path, env: dict[str, str], name: str, *, config: dict | None = None,
                 yaml_text: str | None = None, from_example: str | None = None,
                 secrets: dict[str, str] | None = None) -> auto.Stack:
    target = project / f"Pulumi.{name}.yaml"
    if from_example:
        doc = yaml.safe_load((ROOT / f"Pulumi.{from_example}.yaml").read_text())
        # A checkout's own `up` may have added its passphrase's salt: not ours.
        for key in ("encryptionsalt", "secretsprovider", "encryptedkey"):
            doc.pop(key, None)
        target.write_text(yaml.safe_dump(doc))
    elif yaml_text is not None:
        target.write_text(yaml_text)
    elif config is not None:
        target.write_text(yaml.safe_dump({"config": {f"vmkube:{k}": v for k, v in config.items()}}))
    stack = auto.create_stack(name, work_dir=str(project), opts=auto.LocalWorkspaceOptions(env_vars=env))
    for path, value in (secrets or {}).items():
        stack.set_config(f"vmkube:{path}", auto.ConfigValue(value, secret=True), path=True)
    return stack


def destroy(stack: auto.Stack) -> None:
    """`pulumi destroy` as `make destroy` runs it (tools/pulumi): the Kubernetes provider drops
    objects of a cluster whose API does not answer, since the cluster's VMs go in the same run."""
    stack.workspace.env_vars["PULUMI_K8S_DELETE_UNREACHABLE"] = "true"
    try:
        stack.destroy(on_output=lambda _l: None)
    finally:
        stack.workspace.env_vars.pop("PULUMI_K8S_DELETE_UNREACHABLE", None)
