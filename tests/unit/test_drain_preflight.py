"""The drain preflight as data: what blocks a leaving node's drain, what it would lose.
tests/integration/test_drain_preflight.py reads the same from a real API server."""

from __future__ import annotations

from vmkube.bootstrap.drain import check, pods_path


def pod(name, labels=None, owner="ReplicaSet", ns="default", phase="Running", volumes=(), ready=True):
    meta = {"name": name, "namespace": ns, "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"kind": owner, "name": f"{name}-owner"}]
    return {"metadata": meta, "spec": {"volumes": list(volumes)},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": str(ready)}]}}


def pdb(name, allowed, selector, ns="default", healthy=1, desired=1, policy=None):
    spec = {"selector": selector, **({"unhealthyPodEvictionPolicy": policy} if policy else {})}
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec,
            "status": {"disruptionsAllowed": allowed, "currentHealthy": healthy, "desiredHealthy": desired}}


def test_a_budget_allowing_no_disruption_of_a_pod_on_the_node_blocks_it():
    pods = [pod("web-1", {"app": "web"}), pod("db-1", {"app": "db", "tier": "data"})]
    found = check("w-1", pods, [pdb("web", 0, {"matchLabels": {"app": "web"}}),
                                pdb("db", 1, {"matchLabels": {"app": "db"}})])
    assert found.blocked == ["PodDisruptionBudget default/web allows no disruption now (pods web-1)"]
    assert found.lost == []


def test_budgets_elsewhere_daemonsets_and_finished_pods_do_not_block():
    pods = [pod("agent", {"app": "web"}, owner="DaemonSet"), pod("job-1", {"app": "web"}, phase="Succeeded"),
            pod("web-1", {"app": "web"}, ns="other")]
    assert check("w-1", pods, [pdb("web", 0, {"matchLabels": {"app": "web"}})]).blocked == []


def test_match_expressions_select_as_kubernetes_does():
    pods = [pod("a", {"app": "web", "track": "canary"}), pod("b", {"app": "web"})]
    canary = {"matchExpressions": [{"key": "track", "operator": "In", "values": ["canary"]}]}
    stable = {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "track", "operator": "DoesNotExist"}]}
    everything = {}
    assert check("n", pods, [pdb("c", 0, canary)]).blocked == [
        "PodDisruptionBudget default/c allows no disruption now (pods a)"]
    assert check("n", pods, [pdb("s", 0, stable)]).blocked == [
        "PodDisruptionBudget default/s allows no disruption now (pods b)"]
    assert check("n", pods, [pdb("all", 0, everything)]).blocked == [
        "PodDisruptionBudget default/all allows no disruption now (pods a, b)"]
    assert check("n", pods, [pdb("x", 0, {"matchExpressions": [{"key": "app", "operator": "NotIn",
                                                                 "values": ["web"]}]})]).blocked == []


def test_an_unhealthy_pod_blocks_only_while_its_budget_is_short_of_healthy_pods():
    sick = [pod("web-1", {"app": "web"}, ready=False)]
    web = {"matchLabels": {"app": "web"}}
    # One replica, maxUnavailable 1, not Ready: nothing is allowed, yet the eviction API takes it.
    assert check("n", sick, [pdb("web", 0, web, healthy=0, desired=0)]).blocked == []
    assert check("n", sick, [pdb("web", 0, web, healthy=1, desired=2)]).blocked == [
        "PodDisruptionBudget default/web allows no disruption now (pods web-1)"]
    assert check("n", sick, [pdb("web", 0, web, healthy=1, desired=2, policy="AlwaysAllow")]).blocked == []


def test_bare_pods_and_empty_dirs_are_named_as_lost_not_blocking():
    pods = [pod("debug", owner=None), pod("cache-1", volumes=[{"name": "scratch", "emptyDir": {}},
                                                              {"name": "cfg", "configMap": {"name": "c"}}])]
    found = check("w-1", pods, [])
    assert found.blocked == []
    assert found.lost == ["pod default/debug has no controller to start it elsewhere",
                          "pod default/cache-1 loses its emptyDir volume scratch"]


def test_pods_are_read_per_node_by_field_selector():
    assert pods_path("w-1") == "/api/v1/pods?fieldSelector=spec.nodeName%3Dw-1"
