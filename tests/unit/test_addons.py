"""The cluster add-ons as data (CoreDNS, metrics-server, kube-network-policies) and the
phase that installs them: facts -> commands -> the facts after -> no command."""

from __future__ import annotations

import base64
import json

import pytest
import yaml
from cryptography import x509

from tests.unit.test_bootstrap_render import PLAN, by_path, certs
from vmkube import config
from vmkube.bootstrap import render
from vmkube.bootstrap.addons import (ADDONS, COREDNS, METRICS_SERVER, NETWORK_POLICY, AddonConfig, addon_files,
                                     decide_addons, dns_replicas, images, manifest_path, manifests)
from vmkube.errors import ConfigError

CONFIG = AddonConfig(images=images("1.34.4", "registry.k8s.io"), coredns_replicas=2)


def by_kind(objs):
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


def test_cluster_dns_is_the_tenth_service_address_and_every_kubelet_points_at_it():
    dns = by_kind(manifests(PLAN, CONFIG, certs())[COREDNS])
    assert PLAN.dns_ip == "10.96.0.10"
    assert dns[("Service", "kube-dns")]["spec"]["clusterIP"] == "10.96.0.10"
    kubelet = yaml.safe_load(by_path(render.node_files(PLAN, PLAN.nodes[1], certs(), {}))[
        "/var/lib/kubelet/config.yaml"].content)
    assert kubelet["clusterDNS"] == ["10.96.0.10"] and kubelet["clusterDomain"] == "cluster.local"


def test_coredns_spreads_its_replicas_and_keeps_one_through_a_drain():
    dns = by_kind(manifests(PLAN, CONFIG, certs())[COREDNS])
    deployment = dns[("Deployment", "coredns")]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    assert pod["dnsPolicy"] == "Default"  # its upstream is the node's resolver, never itself
    assert dns[("PodDisruptionBudget", "coredns")]["spec"]["maxUnavailable"] == 1
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa" in dns[("ConfigMap", "coredns")]["data"]["Corefile"]


@pytest.mark.parametrize("nodes, replicas", [(1, 1), (2, 2), (10, 2), (11, 3), (100, 11)])
def test_dns_replicas_grow_with_the_node_count(nodes, replicas):
    assert dns_replicas(nodes) == replicas


def test_every_image_is_pinned_under_one_repository():
    assert images("1.34.4", "registry.k8s.io") == images("1.34.0", "registry.k8s.io")
    mirror = images("1.34.4", "mirror.example.com:5000/k8s")
    assert mirror.coredns == "mirror.example.com:5000/k8s/coredns/coredns:v1.12.1"
    assert mirror.metrics_server == "mirror.example.com:5000/k8s/metrics-server/metrics-server:v0.8.0"
    assert mirror.network_policies == "mirror.example.com:5000/k8s/networking/kube-network-policies:v0.8.0"
    assert mirror.pause == "mirror.example.com:5000/k8s/pause:3.10"
    assert images("1.33.7", "registry.k8s.io").coredns.endswith(":v1.12.0")  # kubeadm's pin per minor
    used = [c["image"] for objs in manifests(PLAN, AddonConfig(mirror, 1), certs()).values() for o in objs
            if o["kind"] in ("Deployment", "DaemonSet") for c in o["spec"]["template"]["spec"]["containers"]]
    assert used and all(i.startswith("mirror.example.com:5000/k8s/") for i in used)


def test_the_metrics_api_is_verified_with_the_cluster_ca_not_trusted_blindly():
    c = certs()
    objs = by_kind(manifests(PLAN, CONFIG, c)[METRICS_SERVER])
    api = objs[("APIService", "v1beta1.metrics.k8s.io")]["spec"]
    assert "insecureSkipTLSVerify" not in api
    assert base64.b64decode(api["caBundle"]).decode() == c["cluster-ca"].cert
    serving = x509.load_pem_x509_certificate(c["metrics-server"].cert.encode())
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)
    assert "metrics-server.kube-system.svc" in names
    args = objs[("Deployment", "metrics-server")]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--kubelet-certificate-authority=/tls/ca.crt" in args and not any("insecure" in a for a in args)


def test_the_addon_manifests_live_on_the_first_control_plane_only_readable_by_root():
    files = addon_files(PLAN, CONFIG, certs())
    assert [f.path for f in files] == [manifest_path(a, True) for a in ADDONS]
    assert all(f.mode == 0o600 for f in files)  # the metrics-server key is in one of them
    off = AddonConfig(CONFIG.images, 1, metrics_server=False, network_policy=False)
    assert [f.path for f in addon_files(PLAN, off, certs())] == [
        "/etc/kubernetes/addons/coredns.yaml", "/etc/kubernetes/addons/removed/metrics-server.yaml",
        "/etc/kubernetes/addons/removed/network-policy.yaml"]


def test_addons_are_applied_when_missing_or_changed_then_nothing():
    expected = {a: len(objs) for a, objs in manifests(PLAN, CONFIG, certs()).items()}
    [step] = decide_addons(CONFIG, present={}, expected=expected, changed=[])
    assert step.why == "installing the add-ons: coredns, metrics-server, network-policy"
    assert "apply --server-side" in step.argv and all(f"-f {manifest_path(a, True)}" in step.argv for a in ADDONS)
    assert decide_addons(CONFIG, present=expected, expected=expected, changed=[]) == []
    changed = decide_addons(CONFIG, present=expected, expected=expected, changed=[manifest_path(COREDNS, True)])
    assert [s.why for s in changed] == ["installing the add-ons: coredns"]


def test_a_disabled_addon_is_removed_then_nothing():
    off = AddonConfig(CONFIG.images, 2, network_policy=False)
    expected = {a: len(objs) for a, objs in manifests(PLAN, off, certs()).items()}
    steps = decide_addons(off, present=expected, expected=expected, changed=[])
    assert [s.why for s in steps] == [f"removing the add-ons: {NETWORK_POLICY}"]
    assert manifest_path(NETWORK_POLICY, False) in steps[0].argv
    assert decide_addons(off, present={**expected, NETWORK_POLICY: 0}, expected=expected, changed=[]) == []


@pytest.mark.parametrize("kubernetes, problem", [
    ({"imageRepository": "https://mirror/k8s"}, "vmkube:kubernetes.imageRepository: must be a registry host"),
    ({"imageRepository": "Mirror.Example.com"}, "vmkube:kubernetes.imageRepository: must be a registry host"),
    ({"addons": {"corednsReplicas": 0}}, "vmkube:kubernetes.addons.corednsReplicas: must be at least 1"),
    ({"addons": {"corednsReplicas": 21}}, "vmkube:kubernetes.addons.corednsReplicas: must be at most 20"),
    ({"addons": {"dns": True}}, "vmkube:kubernetes.addons.dns: unknown key"),
    ({"version": "1.35.0"}, "vmkube:kubernetes.version: Kubernetes 1.35 is not supported"),
    ({"preloadImages": "yes"}, "vmkube:kubernetes.preloadImages: must be true or false"),
])
def test_addon_settings_out_of_range_name_the_key(kubernetes, problem):
    with pytest.raises(ConfigError) as err:
        config.load({"hypervisor": "libvirt", "kubernetes": kubernetes}, stack="t")
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems


def test_a_failed_wait_says_what_each_pod_that_is_not_ready_reports():
    from vmkube.bootstrap.addons import describe_pods
    pods = [
        {"metadata": {"name": "coredns-1"}, "spec": {"nodeName": "n-1"},
         "status": {"phase": "Pending", "containerStatuses": [
             {"name": "coredns", "ready": False, "restartCount": 0,
              "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}}}]}},
        {"metadata": {"name": "knp-1"}, "spec": {"nodeName": "n-2"},
         "status": {"phase": "Running", "containerStatuses": [
             {"name": "knp", "ready": False, "restartCount": 3,
              "state": {"waiting": {"reason": "CrashLoopBackOff"}},
              "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}}]}},
        {"metadata": {"name": "fine"}, "spec": {"nodeName": "n-1"},
         "status": {"phase": "Running", "containerStatuses": [{"name": "x", "ready": True}]}},
    ]
    assert describe_pods(pods) == [
        "  pod coredns-1 on n-1: Pending; coredns waiting ErrImagePull: not found",
        "  pod knp-1 on n-2: Running; knp waiting CrashLoopBackOff: ; knp restarted 3x (last: Error, exit 1)"]


def test_each_addon_runs_the_binary_where_its_image_holds_it(tmp_path):
    """The preloaded image keeps the binary at the upstream image's path, and the
    manifest either names that path as its command or leaves the entrypoint to it
    (arguments only, none of them the binary again: Go's flag parsing would stop there)."""
    import io
    import tarfile
    from vmkube.bootstrap.preload import ADDON_BINARIES, preloaded
    from vmkube.contracts import BinarySource

    tools = {}
    for addon, (binary, _entry) in ADDON_BINARIES.items():
        d = tmp_path / addon
        d.mkdir()
        (d / binary.rsplit("/", 1)[-1]).write_bytes(b"\x7fELF" + addon.encode())
        tools[addon] = str(d)
    names = images("1.34.4", "registry.k8s.io")
    archives = preloaded(BinarySource(source="toolchain", addons=tools), names)
    ref_of = {COREDNS: names.coredns, METRICS_SERVER: names.metrics_server, NETWORK_POLICY: names.network_policies}
    objs = manifests(PLAN, CONFIG, certs())
    for addon, ref in ref_of.items():
        outer = tarfile.open(fileobj=io.BytesIO(archives[ref]))
        manifest = json.load(outer.extractfile("manifest.json"))[0]
        entry = json.load(outer.extractfile(manifest["Config"]))["config"]["Entrypoint"]
        layer = tarfile.open(fileobj=outer.extractfile(manifest["Layers"][0]))
        held = {m.name for m in layer.getmembers() if m.isfile()}
        [container] = [c for o in objs[addon] if o["kind"] in ("Deployment", "DaemonSet")
                       for c in o["spec"]["template"]["spec"]["containers"]]
        run = container.get("command") or entry
        assert run[0].lstrip("/") in held, (addon, run, held)
        assert run[0] not in container.get("args", []), addon


def test_readiness_is_read_from_one_listing():
    from vmkube.bootstrap.addons import ready
    assert not ready("Deployment", None)
    assert ready("Deployment", {"spec": {"replicas": 2}, "status": {"availableReplicas": 2, "updatedReplicas": 2}})
    assert not ready("Deployment", {"spec": {"replicas": 2}, "status": {"availableReplicas": 1, "updatedReplicas": 2}})
    assert not ready("DaemonSet", {"status": {"desiredNumberScheduled": 0}})
    assert ready("DaemonSet", {"status": {"desiredNumberScheduled": 2, "numberAvailable": 2,
                                          "updatedNumberScheduled": 2}})
    assert ready("APIService", {"status": {"conditions": [{"type": "Available", "status": "True"}]}})
    assert not ready("APIService", {"status": {"conditions": [{"type": "Available", "status": "False"}]}})


def test_readiness_reads_each_wanted_object_absent_or_not():
    from vmkube.bootstrap.addons import not_serving
    dep = {"kind": "Deployment", "metadata": {"name": "coredns"}, "spec": {"replicas": 1},
           "status": {"availableReplicas": 1, "updatedReplicas": 1}}
    api = {"kind": "APIService", "metadata": {"name": "v1beta1.metrics.k8s.io"},
           "status": {"conditions": [{"type": "Available", "status": "False"}]}}
    wanted = [("Deployment", "coredns")]
    assert not_serving(wanted, [dep]) == []
    assert not_serving(wanted, [None]) == ["coredns"]
    assert not_serving(wanted, []) == ["coredns"]  # no answer at all
    both = wanted + [("APIService", "v1beta1.metrics.k8s.io")]
    assert not_serving(both, [dep, api]) == ["v1beta1.metrics.k8s.io"]
    assert not_serving(both, [None, api]) == ["coredns", "v1beta1.metrics.k8s.io"]
