"""The Kubernetes provider plugin comes from the offline toolchain: the engine
loads the one tools/build made, at the version the Python SDK asks for, and
never tries to download a plugin. A throwaway program with a Provider and a
ConfigMap is previewed against an API server that is not there, then deployed
to and destroyed from the local control plane (tests/fixtures/kube.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
from pulumi import automation as auto

from tests import workspace
from tests.helpers import ROOT

pytestmark = pytest.mark.engine

PROGRAM = '''\
import pulumi
import pulumi_kubernetes as k8s

provider = k8s.Provider("k8s", kubeconfig=pulumi.Config().require("kubeconfig"),
                        cluster_identifier="probe")
k8s.core.v1.ConfigMap("probe", metadata={"name": "vmkube-plugin-probe", "namespace": "default"},
                      data={"hello": "world"}, opts=pulumi.ResourceOptions(provider=provider))
'''


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kubeconfig(server: str) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "probe",
        "clusters": [{"name": "probe", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "probe", "user": {"token": "probe"}}],
        "contexts": [{"name": "probe", "context": {"cluster": "probe", "user": "probe"}}],
    })


@pytest.fixture
def probe_project(tmp_path: Path, pulumi_bin: Path) -> Path:
    project = tmp_path / "probe"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: k8s-probe\nruntime: python\n")
    (project / "__main__.py").write_text(PROGRAM)
    (project / ".venv").symlink_to(ROOT / ".venv")
    return project


def sdk_version() -> str:
    import pulumi_kubernetes

    meta = Path(pulumi_kubernetes.__file__).parent / "pulumi-plugin.json"
    return json.loads(meta.read_text())["version"]


def probe_stack(tmp_path: Path, project: Path, kubeconfig_text: str) -> tuple[auto.Stack, dict[str, str]]:
    env = workspace.engine_env(tmp_path, project)
    stack = auto.create_stack("probe", work_dir=str(project), opts=auto.LocalWorkspaceOptions(env_vars=env))
    stack.set_config("kubeconfig", auto.ConfigValue(kubeconfig_text, secret=True))
    return stack, env


def test_preview_loads_the_toolchain_plugin_without_downloading(tmp_path, probe_project):
    stack, env = probe_stack(tmp_path, probe_project, kubeconfig(f"https://127.0.0.1:{closed_port()}"))
    assert env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] == "true"

    listed = subprocess.run(["pulumi", "plugin", "ls", "--json"], env={**os.environ, **env},
                            capture_output=True, text=True, check=True).stdout
    plugins = {(p["kind"], p["name"]): p["version"] for p in json.loads(listed)}
    assert plugins.get(("resource", "kubernetes")) == sdk_version(), listed

    lines: list[str] = []
    result = stack.preview(on_output=lines.append, diff=True)
    out = "\n".join(lines) + result.stdout + result.stderr
    assert "download" not in out.lower(), out
    assert "pulumi-resource-kubernetes from $PATH" not in out, out
    # Stack, provider and ConfigMap: the plugin answered Check and Diff for both.
    assert result.change_summary == {"create": 3}, out


def test_up_and_destroy_a_configmap_on_the_local_control_plane(tmp_path, probe_project, kube_cluster):
    stack, _env = probe_stack(tmp_path, probe_project, kube_cluster.kubeconfig)
    lines: list[str] = []
    try:
        result = stack.up(on_output=lines.append)
        assert result.summary.resource_changes == {"create": 3}, "\n".join(lines)
        made = json.loads(kube_cluster.kubectl("get", "configmap", "vmkube-plugin-probe", "-n", "default",
                                               "-o", "json", "--show-managed-fields"))
        assert made["data"] == {"hello": "world"}
        # Server-side apply by the plugin: its field manager owns the data.
        managers = {m["manager"] for m in made["metadata"]["managedFields"]}
        assert any(m.startswith("pulumi-kubernetes") for m in managers), managers
        # A second up finds nothing to change.
        again = stack.up(on_output=lines.append)
        assert again.summary.resource_changes == {"same": 3}, "\n".join(lines)
    finally:
        stack.destroy(on_output=lines.append)
    left = kube_cluster.kubectl("get", "configmaps", "-n", "default", "-o", "name")
    assert "configmap/vmkube-plugin-probe" not in left.split()
