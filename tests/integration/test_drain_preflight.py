"""The drain preflight against a real API server (the kube fixture: real control plane,
kwok playing the nodes): a PodDisruptionBudget the disruption controller computed as
allowing nothing blocks the node running its pod, and a bare pod is named as lost,
from the same curl reads the bootstrap makes on a control plane."""

from __future__ import annotations

import json
import time

from tests.fixtures.kube import ControlPlane
from tests.helpers import deployment_manifest
from tests.integration.test_addon_readiness import read
from vmkube.bootstrap.drain import PDB_PATH, check, pods_path

NS = "fixture-drain"


def test_a_budget_at_its_minimum_blocks_the_drain_of_its_pods_node(kube_cluster: ControlPlane):
    kube_cluster.kubectl("create", "namespace", NS)
    try:
        kube_cluster.kubectl("apply", "-n", NS, "-f", "-", input=deployment_manifest("guarded", 1))
        kube_cluster.kubectl("rollout", "status", "-n", NS, "deployment/guarded", "--timeout=60s", timeout=70)
        kube_cluster.kubectl("create", "poddisruptionbudget", "guarded", "-n", NS, "--selector=app=guarded",
                             "--min-available=1")
        pods = json.loads(kube_cluster.kubectl("get", "pods", "-n", NS, "-o", "json"))["items"]
        node = next(p["spec"]["nodeName"] for p in pods if p["metadata"]["name"].startswith("guarded-"))
        # A pod no controller owns, bound to the same node.
        bare = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare", "namespace": NS},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "vmkube.local/hello:1.0"}]}}
        kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(bare))
        deadline = time.monotonic() + 60
        while True:  # the disruption controller fills in the budget's status
            status = json.loads(kube_cluster.kubectl("get", "pdb", "guarded", "-n", NS, "-o", "json"))["status"]
            if status.get("observedGeneration") and status.get("currentHealthy") == 1:
                break
            assert time.monotonic() < deadline, status
            time.sleep(1)

        pdbs, on_node = read(kube_cluster, PDB_PATH, pods_path(node))
        found = check(node, on_node.json()["items"], pdbs.json()["items"])
        guarded = next(p["metadata"]["name"] for p in on_node.json()["items"]
                       if p["metadata"]["name"].startswith("guarded-"))
        assert found.blocked == [f"PodDisruptionBudget {NS}/guarded allows no disruption now (pods {guarded})"]
        assert found.lost == [f"pod {NS}/bare has no controller to start it elsewhere"]

        # Room for a disruption: the same read no longer blocks.
        kube_cluster.kubectl("scale", "-n", NS, "deployment/guarded", "--replicas=2")
        deadline = time.monotonic() + 60
        while True:
            pdbs, on_node = read(kube_cluster, PDB_PATH, pods_path(node))
            if check(node, on_node.json()["items"], pdbs.json()["items"]).blocked == []:
                break
            assert time.monotonic() < deadline, pdbs.body[-500:]
            time.sleep(1)
    finally:
        kube_cluster.kubectl("delete", "namespace", NS, "--wait=false")
