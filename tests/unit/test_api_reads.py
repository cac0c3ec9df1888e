"""The bootstrap's reads (vmkube.bootstrap.api): one curl for several paths, an answer
with its status per path, whatever the bodies hold. tests/integration/test_addon_readiness.py
runs the same script against a real API server."""

from __future__ import annotations

import shlex

from vmkube.bootstrap import api


def test_one_curl_reads_every_path_with_the_super_admins_files():
    script = api.script(["/readyz", "/api/v1/nodes?limit=1"])
    words = shlex.split(script)
    assert words[0] == "curl" and words.count("curl") == 1
    assert "https://127.0.0.1:6443/readyz" in words and "https://127.0.0.1:6443/api/v1/nodes?limit=1" in words
    assert words[words.index("--cert") + 1] == "/etc/kubernetes/pki/vmkube-super-admin.crt"
    assert words[words.index("--key") + 1] == "/etc/kubernetes/pki/vmkube-super-admin.key"
    assert words[words.index("--cacert") + 1] == "/etc/kubernetes/pki/ca.crt"


def test_answers_keep_their_status_and_multi_line_bodies():
    out = ('{"kind":"NodeList","items":[]}\n--vmkube-status 200\n'
           '[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed\n--vmkube-status 500\n'
           '\n--vmkube-status 000\n')
    nodes, readyz, refused = api.parse(out, 3)
    assert nodes.ok and nodes.json() == {"kind": "NodeList", "items": []}
    assert readyz.status == 500 and not readyz.ok and readyz.json() is None
    assert readyz.body.splitlines() == ["[+]ping ok", "[-]etcd failed: reason withheld", "readyz check failed"]
    assert refused.status == 0 and not refused.ok


def test_a_cut_off_output_reads_as_no_answer_for_the_rest():
    first, second = api.parse('{"a": 1}\n--vmkube-status 200\n{"b"', 2)
    assert first.json() == {"a": 1}
    assert second.status == 0 and second.json() is None
    assert api.parse("", 1) == [api.Answer(0, "")]


def test_a_body_that_is_not_an_object_is_no_object():
    [answer] = api.parse("ok\n--vmkube-status 200\n", 1)
    assert answer.ok and answer.body == "ok" and answer.json() is None


def test_object_paths_of_the_kinds_waited_for():
    assert api.object_path("Deployment", "coredns") == "/apis/apps/v1/namespaces/kube-system/deployments/coredns"
    assert api.object_path("DaemonSet", "x", "ns") == "/apis/apps/v1/namespaces/ns/daemonsets/x"
    assert api.object_path("APIService", "v1beta1.metrics.k8s.io") == \
        "/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io"


def test_manifest_objects_map_to_their_api_paths():
    assert api.path_of({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "kube-system"}}) \
        == "/api/v1/namespaces/kube-system/configmaps/c"
    assert api.path_of({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                        "metadata": {"name": "system:coredns"}}) == \
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/system:coredns"
    assert api.path_of({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                        "metadata": {"name": "n", "namespace": "d"}}) == "/apis/networking.k8s.io/v1/namespaces/d/networkpolicies/n"
    assert api.path_of({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                        "metadata": {"name": "p", "namespace": "d"}}) == "/apis/policy/v1/namespaces/d/poddisruptionbudgets/p"
