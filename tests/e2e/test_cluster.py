"""A real Kubernetes cluster on real libvirt VMs, through the real engine:
1 control plane + 1 worker reach Ready (checked through the API with the
kubeconfig output), a Pod runs on the worker from an image built here and
imported into containerd, a bootstrap over the converged cluster runs zero
mutating commands, no secret shows in plaintext anywhere, a wrong SSH key or an
unreachable node fails naming the node and changes nothing, and a worker that
leaves the config is drained and deleted with its VM."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from pulumi import automation as auto

from infra.bootstrap import cluster as bootstrap_cluster
from infra.sshkeys import generate_ed25519
from tests.fixtures.libvirt import leftovers
from tests.helpers import find_deployment

pytestmark = pytest.mark.engine
POD = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sandbox-check", "namespace": "default"},
    "spec": {"containers": [{"name": "pause", "image": "vmkube.local/pause:3.10", "imagePullPolicy": "Never"}],
             "nodeSelector": {}, "tolerations": []},
}


SECRET_SIG = "4dabf18193072939515e22adb298388d"
# Stack, Cluster, 2 NodePools, 2 VmPools, Bootstrap, LeavingVms (the stack's own SSH key is configured)
CLUSTER = 8
# ... and Workloads, its Kubernetes provider, the hello ConfigGroup, its Deployment and Service
TOTAL = CLUSTER + 5


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


def secret_values(export: dict, ssh_key: str) -> dict[str, str]:
    """Every secret the stack holds, by where it comes from, in the forms it could leak in."""
    found = {"ssh.privateKey": ssh_key}
    for res in export["resources"]:
        outputs = unwrap(res.get("outputs") or {})
        if res["type"].endswith("vmkube:Bootstrap"):
            for name, pair in outputs["pki"].items():
                found[f"pki {name} key"] = pair["key"]
            found["kubeconfig client key"] = outputs["kubeconfig"].split("client-key-data: ")[1].split()[0]
        if res["type"].endswith("vmkube:VmPool"):
            for node, key in (outputs.get("hostPrivateKeys") or {}).items():
                found[f"host key of {node}"] = key
    forms = {}
    for what, value in found.items():
        forms[what] = value
        if "PRIVATE KEY-----" in value:
            # One line of the key body is enough to count as a leak, however it is wrapped.
            body = [line for line in value.splitlines() if line and "-----" not in line]
            forms[f"{what} (a line of it)"] = max(body, key=len)
            forms[f"{what} (base64)"] = base64.b64encode(value.encode()).decode()
    return forms


def assert_no_plaintext(secrets: dict[str, str], places: dict[str, str]) -> None:
    leaks = [f"{what} in {where}" for what, value in secrets.items() for where, text in places.items()
             if value in text]
    assert leaks == [], leaks


def ready_nodes(kubeconfig: Path) -> dict[str, str]:
    items = json.loads(kubectl(kubeconfig, "get", "nodes", "-o", "json"))["items"]
    return {i["metadata"]["name"]: {c["type"]: c["status"] for c in i["status"]["conditions"]}["Ready"]
            for i in items}


def failed_up(stack) -> str:
    lines: list[str] = []
    with pytest.raises(auto.errors.CommandError) as err:
        stack.up(on_output=lines.append)
    return "\n".join(lines) + str(err.value)


def answer(url: str, deadline_s: float = 120) -> str:
    """What the app says through its Service from this machine; retried while pods roll."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return resp.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def deployment(kubeconfig: Path, name: str) -> dict | None:
    return find_deployment(kubectl(kubeconfig, "get", "deployments", "-o", "json"), name)


def check_workloads(stack, make_stack, kubeconfig: Path, url: str, tmp_path: Path) -> None:
    """The demo app as desired state: scaled, rolled to a new tag, removed; then from its own stack."""
    assert answer(url).startswith("hello from vmkube 1.0 on hello-")

    # A replica change previews as exactly one in-place update, and that is what a reviewer reads.
    stack.set_config("vmkube:workloads.hello.replicas", auto.ConfigValue("2"), path=True)
    lines: list[str] = []
    preview = stack.preview(diff=True, on_output=lines.append)
    diff = "\n".join(lines)
    (tmp_path / "preview-replicas.txt").write_text(diff)
    assert {k: v for k, v in preview.change_summary.items() if k != "same"} == {"update": 1}, diff
    assert "kubernetes:apps/v1:Deployment" in diff and "replicas: 1 => 2" in diff, diff
    stack.up(on_output=lambda _l: None)
    assert deployment(kubeconfig, "hello")["status"]["readyReplicas"] == 2

    # A new tag rolls out: the Service answers from the new version.
    stack.set_config("vmkube:workloads.hello.tag", auto.ConfigValue("1.1"), path=True)
    stack.up(on_output=lambda _l: None)
    assert answer(url).startswith("hello from vmkube 1.1")

    # Out of the config, out of the cluster.
    stack.remove_config("vmkube:workloads", path=True)
    removed = stack.up(on_output=lambda _l: None)
    assert removed.summary.resource_changes.get("delete", 0) >= 3, removed.summary.resource_changes
    assert deployment(kubeconfig, "hello") is None

    # The same app from a workloads-only stack reading the cluster stack's kubeconfig.
    apps = make_stack("e2e-apps", config={"clusterStack": "e2e", "workloads": {"hello": {"replicas": 1}}})
    try:
        up = apps.up(on_output=lambda _l: None)
        assert up.outputs["apps"].value == {"hello": [url]}
        assert deployment(kubeconfig, "hello")["status"]["readyReplicas"] == 1
        assert answer(url).startswith("hello from vmkube 1.0")
    finally:
        apps.destroy(on_output=lambda _l: None)
    assert deployment(kubeconfig, "hello") is None


def test_cluster_on_libvirt(system_libvirt, node_image, vm_prefix, make_stack, engine_env, project,
                            tmp_path, caplog):
    key = generate_ed25519(comment="e2e")
    cfg = {"name": vm_prefix, "hypervisor": "libvirt", "libvirt": {"uri": system_libvirt},
           "controlPlane": {"count": 1, "cpus": 2, "memoryMb": 2048, "diskGb": 8},
           "workerPools": [{"name": "w", "count": 1, "cpus": 1, "memoryMb": 1536, "diskGb": 8}],
           "workloads": {"hello": {"replicas": 1}}}
    stack = make_stack("e2e", config=cfg, secrets={"ssh.privateKey": key.private_openssh})
    cp, worker = f"{vm_prefix}-cp-1", f"{vm_prefix}-w-1"
    logs: dict[str, str] = {}
    try:
        lines: list[str] = []
        up = stack.up(on_output=lines.append)
        text = logs["first up"] = "\n".join(lines)
        assert up.summary.resource_changes == {"create": TOTAL}, text
        nodes = {n["name"]: n for n in up.outputs["nodes"].value}
        assert all(n["ready"] and n["kubeletVersion"] == "v1.34.4" for n in nodes.values()), nodes
        assert f"{cp}: converged" in text and f"{worker}: converged" in text  # per-node progress

        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(up.outputs["kubeconfig"].value)
        assert up.outputs["kubeconfig"].secret
        assert ready_nodes(kubeconfig) == {cp: "True", worker: "True"}
        labels = {i["metadata"]["name"]: i["metadata"]["labels"]
                  for i in json.loads(kubectl(kubeconfig, "get", "nodes", "-o", "json"))["items"]}
        assert "node-role.kubernetes.io/control-plane" in labels[cp]

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

        # The same bootstrap again over the converged cluster: every phase reads facts, none changes anything.
        export = stack.export_stack().deployment
        resource = [r for r in export["resources"] if r["type"].endswith("vmkube:Bootstrap")][0]
        caplog.set_level(logging.INFO, logger="vmkube")
        caplog.clear()
        bootstrap_cluster.converge(unwrap(resource["inputs"]), previous=unwrap(resource["outputs"]))
        summaries = [r.getMessage() for r in caplog.records if ": converged (" in r.getMessage()]
        assert sorted(summaries) == sorted([f"{cp}: converged (0 changes, 1 connection)",
                                            f"{worker}: converged (0 changes, 1 connection)"]), summaries
        logs["bootstrap log"] = caplog.text

        # No secret in plaintext: state, `pulumi stack export`, the runs' output, a preview.
        secrets = secret_values(export, key.private_openssh)
        assert len(secrets) >= 20, sorted(secrets)
        lines = []
        stack.preview(on_output=lines.append)
        logs["preview"] = "\n".join(lines)
        cli = subprocess.run(["pulumi", "stack", "export", "--stack", "e2e"], cwd=project, capture_output=True,
                             text=True, env={**os.environ, **engine_env}, check=True).stdout
        assert SECRET_SIG in cli  # the secrets are there, as ciphertext
        state_file = Path(engine_env["PULUMI_BACKEND_URL"].removeprefix("file://")) / ".pulumi/stacks/vmkube/e2e.json"
        assert_no_plaintext(secrets, {"pulumi stack export": cli, "state file": state_file.read_text(), **logs})

        # A wrong SSH key: every node fails by name, at the first phase, before anything changes.
        stack.set_config("vmkube:ssh.privateKey", auto.ConfigValue(generate_ed25519().private_openssh,
                                                                   secret=True), path=True)
        out = failed_up(stack)
        assert f"{cp}: authentication refused for user 'vmkube'" in out, out
        assert f"{worker}: authentication refused for user 'vmkube'" in out, out
        assert "file(s) changed" not in out
        stack.set_config("vmkube:ssh.privateKey", auto.ConfigValue(key.private_openssh, secret=True), path=True)

        # An unreachable node: named, and the reachable one is left as it was.
        worker_ip = nodes[worker]["ip"]
        rule = ["OUTPUT", "-d", worker_ip, "-p", "tcp", "--dport", "22", "-j", "DROP"]
        stack.set_config("vmkube:ssh.connectTimeoutSeconds", auto.ConfigValue("15"), path=True)
        subprocess.run(["iptables", "-I", *rule], check=True)
        try:
            out = failed_up(stack)
        finally:
            subprocess.run(["iptables", "-D", *rule], check=True)
        stack.remove_config("vmkube:ssh.connectTimeoutSeconds", path=True)
        assert f"{worker}: timed out: no SSH login at {worker_ip}:22 within 15s" in out, out
        assert "failed on 1 of 2 nodes" in out and "file(s) changed" not in out, out
        assert ready_nodes(kubeconfig) == {cp: "True", worker: "True"}

        # Nothing half-done is left by the failures: the next run has nothing to do.
        again = stack.up(on_output=lambda _l: None)
        assert again.summary.resource_changes == {"same": TOTAL}

        check_workloads(stack, make_stack, kubeconfig, up.outputs["apps"].value["hello"][0], tmp_path)

        # The worker leaves the config: cordoned, drained, its Node deleted, then its VM.
        stack.set_config("vmkube:workerPools[0].count", auto.ConfigValue("0"), path=True)
        lines = []
        shrunk = stack.up(on_output=lines.append)
        text = "\n".join(lines)
        assert shrunk.summary.resource_changes == {"same": CLUSTER - 3, "update": 3}, text
        assert text.index(f"{worker}: draining") < text.index(f"{worker}: removing VM"), text
        assert [n["name"] for n in shrunk.outputs["nodes"].value] == [cp]
        assert ready_nodes(kubeconfig) == {cp: "True"}
        assert leftovers(system_libvirt, worker) == []
        assert stack.up(on_output=lambda _l: None).summary.resource_changes == {"same": CLUSTER}
    finally:
        stack.destroy(on_output=lambda _l: None)
    assert leftovers(system_libvirt, vm_prefix) == []
