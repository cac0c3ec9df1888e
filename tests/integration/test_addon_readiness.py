"""The add-on wait (vmkube.bootstrap.addons.not_serving) against a real API server and
the real kubectl's output: for one name kubectl prints the object itself, for several a
List, for a missing one (with --ignore-not-found) nothing."""

from __future__ import annotations

from tests.fixtures.kube import ControlPlane
from tests.helpers import deployment_manifest
from vmkube.bootstrap.addons import not_serving

ROLLOUT_SECONDS = 60


def test_addon_readiness_reads_what_kubectl_prints(kube_cluster: ControlPlane):
    kube_cluster.kubectl("create", "namespace", "fixture-readiness")
    kube_cluster.kubectl("apply", "-n", "fixture-readiness", "-f", "-", input=deployment_manifest("dns", 1))
    kube_cluster.kubectl("rollout", "status", "-n", "fixture-readiness", "deployment/dns",
                         f"--timeout={ROLLOUT_SECONDS}s", timeout=ROLLOUT_SECONDS + 10)

    def get(*refs: str) -> str:
        return kube_cluster.kubectl("get", *refs, "-n", "fixture-readiness", "--ignore-not-found", "-o", "json")
    one = [("Deployment", "dns")]
    assert not_serving(one, get("deployment/dns")) == []
    assert not_serving(one + [("Deployment", "absent")], get("deployment/dns", "deployment/absent")) == ["absent"]
    assert not_serving([("Deployment", "absent")], get("deployment/absent")) == ["absent"]
    kube_cluster.kubectl("delete", "namespace", "fixture-readiness", "--wait=false")
