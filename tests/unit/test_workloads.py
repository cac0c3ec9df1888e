"""Workload manifests as data: loading, checks against the pinned Kubernetes
version's own API spec (built by the toolchain), and per-stack overrides."""

from __future__ import annotations

import pytest

from vmkube.config import WorkloadSpec
from vmkube.workloads import ManifestError, resolve, served_kinds
from tests.helpers import ROOT

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: registry.example.org:5000/team/web:2.0
"""
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n"


@pytest.fixture(scope="module")
def served(kubernetes_dir):
    return served_kinds(kubernetes_dir / "swagger.json")


def apps(tmp_path, **files):
    root = tmp_path / "workloads"
    for path, text in files.items():
        app, name = path.split("__")
        (root / app).mkdir(parents=True, exist_ok=True)
        (root / app / name).write_text(text)
    return root


def problems_of(root, specs, served):
    with pytest.raises(ManifestError) as err:
        resolve(root, specs, served, "1.34.4")
    return err.value.problems


def test_the_pinned_versions_api_is_what_manifests_are_checked_against(served):
    assert {("apps/v1", "Deployment"), ("v1", "Service"), ("batch/v1", "CronJob")} <= served
    assert ("extensions/v1beta1", "Deployment") not in served  # removed in 1.16


def test_the_demo_app_resolves_with_the_local_stacks_overrides(served):
    out = resolve(ROOT / "workloads", [WorkloadSpec(app="hello", replicas=2)], served, "1.34.4")
    kinds = {m.kind: m for m in out["hello"]}
    assert set(kinds) == {"Deployment", "Service"}
    assert kinds["Deployment"].obj["spec"]["replicas"] == 2


def test_overrides_set_replicas_image_tag_resources_and_labels(tmp_path, served):
    root = apps(tmp_path, **{"web__deployment.yaml": DEPLOYMENT, "web__config.yaml": CONFIGMAP})
    spec = WorkloadSpec(app="web", replicas=3, tag="2.1", labels={"team": "blue"},
                        resources={"limits": {"memory": "64Mi"}})
    out = {m.kind: m.obj for m in resolve(root, [spec], served, "1.34.4")["web"]}
    dep = out["Deployment"]
    assert dep["spec"]["replicas"] == 3
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.org:5000/team/web:2.1"  # the registry port is kept
    assert container["resources"] == {"limits": {"memory": "64Mi"}}
    assert dep["metadata"]["labels"] == {"app": "web", "team": "blue"}
    assert dep["spec"]["template"]["metadata"]["labels"] == {"app": "web", "team": "blue"}
    assert dep["spec"]["selector"] == {"matchLabels": {"app": "web"}}  # selectors are immutable: untouched
    assert out["ConfigMap"]["metadata"]["labels"] == {"team": "blue"}
    moved = resolve(root, [WorkloadSpec(app="web", image="mirror.local/web")], served, "1.34.4")["web"]
    assert [m.obj for m in moved if m.kind == "Deployment"][0]["spec"]["template"]["spec"]["containers"][0][
        "image"] == "mirror.local/web:2.0"
    # The files themselves stay as written.
    assert "replicas: 1" in (root / "web" / "deployment.yaml").read_text()


def test_an_override_for_a_key_the_app_does_not_have_names_the_key(tmp_path, served):
    root = apps(tmp_path, **{"conf__config.yaml": CONFIGMAP})
    problems = problems_of(root, [WorkloadSpec(app="conf", replicas=2, tag="1.0")], served)
    assert problems == [
        "vmkube:workloads.conf.replicas: the app has no Deployment, StatefulSet, ReplicaSet to scale",
        "vmkube:workloads.conf.tag: the app has no containers (no Deployment, StatefulSet, DaemonSet, Job, "
        "CronJob or Pod)"]


def test_bad_manifests_name_the_file_and_object(tmp_path, served):
    root = apps(tmp_path, **{
        "bad__broken.yaml": "kind: ConfigMap\nmetadata: {name: x\n",
        "bad__nokind.yaml": "apiVersion: v1\nmetadata: {name: y}\n",
        "bad__old.yaml": DEPLOYMENT.replace("apps/v1", "extensions/v1beta1"),
        "bad__twice.yaml": CONFIGMAP + "---\n" + CONFIGMAP,
        "bad__list.yaml": "- just\n- a list\n",
    })
    problems = problems_of(root, [WorkloadSpec(app="bad")], served)
    assert problems[0].startswith("workloads/bad/broken.yaml: not valid YAML at line 3")
    assert "workloads/bad/list.yaml: not a Kubernetes object (a YAML mapping), got list" in problems
    assert "workloads/bad/nokind.yaml: missing kind" in problems
    assert ("workloads/bad/old.yaml: extensions/v1beta1 Deployment 'web': Kubernetes 1.34.4 does not serve "
            "extensions/v1beta1 Deployment; it serves Deployment as apps/v1") in problems
    assert ("workloads/bad/twice.yaml (document 2): v1 ConfigMap 'settings': the same object is also defined in "
            "workloads/bad/twice.yaml (document 1)") in problems


def test_custom_resources_are_known_when_the_app_defines_them(tmp_path, served):
    crd = ("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.org}\n"
           "spec:\n  group: example.org\n  names: {kind: Widget, plural: widgets}\n  scope: Namespaced\n"
           "  versions: [{name: v1, served: true, storage: true}]\n")
    root = apps(tmp_path, **{"w__crd.yaml": crd, "w__widget.yaml": "apiVersion: example.org/v1\nkind: Widget\n"
                                                                   "metadata: {name: one}\n"})
    assert [m.kind for m in resolve(root, [WorkloadSpec(app="w")], served, "1.34.4")["w"]] == [
        "CustomResourceDefinition", "Widget"]
