"""A real Kubernetes cluster on real libvirt VMs, through the real engine:
1 control plane + 1 worker reach Ready (checked through the API with the
kubeconfig output), a Pod runs on the worker from an image built here and
imported into containerd, and a bootstrap over the converged cluster runs zero
mutating commands."""

from __future__ import annotations

import json
import logging
import subprocess
import time
from pathlib import Path

import pytest

from infra.bootstrap import cluster as bootstrap_cluster
from tests.fixtures.libvirt import leftovers

pytestmark = pytest.mark.engine
POD = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sandbox-check", "namespace": "default"},
    "spec": {"containers": [{"name": "pause", "image": "vmkube.local/pause:3.10", "imagePullPolicy": "Never"}],
             "nodeSelector": {}, "tolerations": []},
}


SECRET_SIG = "4dabf18193072939515e22adb298388d"


def unwrap(value):
    """Checkpoint values with secrets decrypted by `stack export`: the plain values."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) and "plaintext" in value:
            return unwrap(json.loads(value["plaintext"]))
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    binary = Path(subprocess.run(["tools/build", "--tool-dir", "kubernetes"], capture_output=True, text=True,
                                 cwd=Path(__file__).resolve().parents[2]).stdout.strip()) / "kubectl"
    proc = subprocess.run([str(binary), "--kubeconfig", str(kubeconfig), *args], input=stdin,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_cluster_on_libvirt_reaches_ready_and_runs_a_pod(system_libvirt, node_image, vm_prefix, make_stack,
                                                         tmp_path, caplog):
    cfg = {"name": vm_prefix, "hypervisor": "libvirt", "libvirt": {"uri": system_libvirt},
           "controlPlane": {"count": 1, "cpus": 2, "memoryMb": 2048, "diskGb": 8},
           "workerPools": [{"name": "w", "count": 1, "cpus": 1, "memoryMb": 1536, "diskGb": 8}]}
    stack = make_stack("e2e", config=cfg)
    cp, worker = f"{vm_prefix}-cp-1", f"{vm_prefix}-w-1"
    try:
        lines: list[str] = []
        up = stack.up(on_output=lines.append)
        text = "\n".join(lines)
        assert up.summary.resource_changes == {"create": 8}, text
        nodes = {n["name"]: n for n in up.outputs["nodes"].value}
        assert all(n["ready"] and n["kubeletVersion"] == "v1.34.4" for n in nodes.values()), nodes
        assert f"{cp}: converged" in text and f"{worker}: converged" in text  # per-node progress

        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(up.outputs["kubeconfig"].value)
        assert up.outputs["kubeconfig"].secret
        api_nodes = json.loads(kubectl(kubeconfig, "get", "nodes", "-o", "json"))["items"]
        ready = {i["metadata"]["name"]: {c["type"]: c["status"] for c in i["status"]["conditions"]}["Ready"]
                 for i in api_nodes}
        assert ready == {cp: "True", worker: "True"}
        roles = {i["metadata"]["name"]: i["metadata"]["labels"] for i in api_nodes}
        assert "node-role.kubernetes.io/control-plane" in roles[cp]

        pod = json.loads(json.dumps(POD))
        pod["spec"]["nodeSelector"] = {"kubernetes.io/hostname": worker}
        kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(pod))
        deadline = time.monotonic() + 300
        while True:
            status = json.loads(kubectl(kubeconfig, "get", "pod", "sandbox-check", "-o", "json"))["status"]
            if status.get("phase") == "Running":
                break
            assert time.monotonic() < deadline, status
            time.sleep(3)
        kubectl(kubeconfig, "delete", "pod", "sandbox-check", "--wait=false")

        # The same bootstrap again over the converged cluster: every phase reads facts, none changes anything.
        resource = [r for r in stack.export_stack().deployment["resources"] if r["type"].endswith("vmkube:Bootstrap")][0]
        caplog.set_level(logging.INFO, logger="vmkube")
        caplog.clear()
        bootstrap_cluster.converge(unwrap(resource["inputs"]), previous=unwrap(resource["outputs"]))
        summaries = [r.getMessage() for r in caplog.records if ": converged (" in r.getMessage()]
        assert sorted(summaries) == sorted([f"{cp}: converged (0 changes, 1 connection)",
                                            f"{worker}: converged (0 changes, 1 connection)"]), summaries

        again = stack.up(on_output=lambda _l: None)
        assert again.summary.resource_changes == {"same": 8}
    finally:
        stack.destroy(on_output=lambda _l: None)
    assert leftovers(system_libvirt, vm_prefix) == []
