"""Workloads through the real engine and pulumi-kubernetes against a real
kube-apiserver (tests/fixtures/kube.py: etcd, API server, controller manager
and scheduler from the toolchain; kwok plays the nodes, which is the one thing
simulated here: pods turn Ready without a kubelet).

The cluster stack is stood in for by a stack of the same project whose program
(inline) only exports the control plane's kubeconfig and a node: an apps stack
reads it through a StackReference exactly as it reads a real cluster stack.
"""

from __future__ import annotations

import pulumi
import pytest
from pulumi import automation as auto

from tests.helpers import find_deployment

pytestmark = pytest.mark.engine


@pytest.fixture
def cluster_stack(kube_cluster, engine_env, project):
    """A stack named `cluster` exporting the local control plane's kubeconfig, as a cluster stack does."""
    kubeconfig = kube_cluster.kubeconfig

    def program() -> None:
        pulumi.export("kubeconfig", pulumi.Output.secret(kubeconfig))
        pulumi.export("nodes", [{"name": "kwok-node-1", "role": "worker", "ip": "127.0.0.1"}])

    stack = auto.create_stack("cluster", project_name="vmkube", program=program,
                              opts=auto.LocalWorkspaceOptions(env_vars=engine_env, work_dir=str(project)))
    stack.up(on_output=lambda _l: None)
    yield stack
    stack.destroy(on_output=lambda _l: None)


def deployment(kube, name: str, namespace: str = "default") -> dict | None:
    return find_deployment(kube.kubectl("get", "deployments", "-n", namespace, "-o", "json"), name)


def test_apps_stack_scales_rolls_and_removes_the_demo_app(kube_cluster, cluster_stack, make_stack, tmp_path):
    apps = make_stack("apps", config={"clusterStack": "cluster", "workloads": {"hello": {"replicas": 1}}})
    up = apps.up(on_output=lambda _l: None)
    assert up.outputs["apps"].value == {"hello": ["http://127.0.0.1:30080"]}
    dep = deployment(kube_cluster, "hello")
    assert dep["status"]["readyReplicas"] == 1  # `up` returned once the Deployment was ready
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "vmkube.local/hello:1.0"

    # A replica change: the preview a reviewer reads shows one in-place update, replicas 1 => 2.
    apps.set_config("vmkube:workloads.hello.replicas", auto.ConfigValue("3"), path=True)
    lines: list[str] = []
    preview = apps.preview(diff=True, on_output=lines.append)
    diff = "\n".join(lines)
    (tmp_path / "preview-replicas.txt").write_text(diff)
    assert {k: v for k, v in preview.change_summary.items() if k != "same"} == {"update": 1}, diff
    changed = [line.strip() for line in diff.splitlines() if line.strip().startswith("~ ")]
    assert any("kubernetes:apps/v1:Deployment" in line and "update" in line for line in changed), diff
    assert "replicas: 1 => 3" in diff, diff
    scaled = apps.up(on_output=lambda _l: None)
    assert scaled.summary.resource_changes.get("update") == 1
    assert deployment(kube_cluster, "hello")["status"]["readyReplicas"] == 3

    # A new tag rolls out in place: same Deployment, new pod template.
    uid = deployment(kube_cluster, "hello")["metadata"]["uid"]
    apps.set_config("vmkube:workloads.hello.tag", auto.ConfigValue("1.1"), path=True)
    apps.up(on_output=lambda _l: None)
    rolled = deployment(kube_cluster, "hello")
    assert rolled["metadata"]["uid"] == uid
    assert rolled["spec"]["template"]["spec"]["containers"][0]["image"] == "vmkube.local/hello:1.1"
    assert rolled["status"]["updatedReplicas"] == 3

    # Nothing changed, nothing to do.
    assert apps.up(on_output=lambda _l: None).summary.resource_changes.get("update", 0) == 0

    # Out of the config, out of the cluster.
    apps.set_config("vmkube:workloads", auto.ConfigValue("{}"), path=True)
    apps.up(on_output=lambda _l: None)
    assert deployment(kube_cluster, "hello") is None
    assert "hello" not in kube_cluster.kubectl("get", "services", "-o", "name")
    apps.destroy(on_output=lambda _l: None)


def test_a_bad_override_fails_the_preview_naming_the_key(cluster_stack, make_stack):
    apps = make_stack("bad", config={"clusterStack": "cluster", "workloads": {"hello": {"replicas": -1},
                                                                              "nope": {}}})
    lines: list[str] = []
    with pytest.raises(auto.errors.CommandError):
        apps.preview(on_output=lines.append)
    text = "\n".join(lines)
    assert "vmkube:workloads.hello.replicas: must be at least 0 (got -1)" in text, text
    assert "vmkube:workloads.nope: unknown app; workloads/ has: hello" in text, text
    assert "Traceback" not in text


def test_an_apps_stack_whose_cluster_is_gone_still_destroys(tmp_path, make_stack, engine_env, project):
    """`make destroy` (tools/pulumi) sets PULUMI_K8S_DELETE_UNREACHABLE for destroy only: the
    provider then drops the objects of an API it cannot reach instead of failing on them."""
    from tests.fixtures.kube import start_control_plane

    with start_control_plane(tmp_path / "gone") as cp:
        kubeconfig = cp.kubeconfig

        def program() -> None:
            pulumi.export("kubeconfig", pulumi.Output.secret(kubeconfig))
            pulumi.export("nodes", [{"name": "kwok-node-1", "role": "worker", "ip": "127.0.0.1"}])

        cluster = auto.create_stack("doomed", project_name="vmkube", program=program,
                                    opts=auto.LocalWorkspaceOptions(env_vars=engine_env, work_dir=str(project)))
        cluster.up(on_output=lambda _l: None)
        apps = make_stack("doomed-apps", config={"clusterStack": "doomed", "workloads": {"hello": {"replicas": 1}}})
        apps.up(on_output=lambda _l: None)
        cp.kill(cp.plan.control_planes[0])  # the cluster's only control plane is gone

        with pytest.raises(auto.errors.CommandError):
            apps.destroy(on_output=lambda _l: None)  # what a plain `pulumi destroy` does
        apps.workspace.env_vars["PULUMI_K8S_DELETE_UNREACHABLE"] = "true"  # what tools/pulumi sets for destroy
        apps.destroy(on_output=lambda _l: None)
        assert apps.export_stack().deployment.get("resources") in (None, [])
        cluster.destroy(on_output=lambda _l: None)
        cp.start(cp.plan.control_planes[0])  # so the fixture stops what it started
