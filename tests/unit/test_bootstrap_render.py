"""Bootstrap as data: the plan, pod ranges, the certificates it wants, the files
each node gets, and the sandbox image tarball."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import yaml

from vmkube import oci, pki
from vmkube.bootstrap import render
from vmkube.bootstrap.plan import CAS, Plan, PlanNode, allocate_pod_cidrs, wanted_certs

PLAN = Plan("dev", "1.34.4", "10.244.0.0/16", "10.96.0.0/12", (
    PlanNode("dev-cp-1", "control-plane", "192.168.122.10", "10.244.0.0/24",
             taints=("node-role.kubernetes.io/control-plane:NoSchedule",)),
    PlanNode("dev-w-1", "worker", "192.168.122.11", "10.244.1.0/24",
             labels={"tier": "general", "node-role.kubernetes.io/worker": ""}),
))


def certs():
    out = pki.ensure({}, wanted_certs(PLAN), CAS)
    out["service-account"] = pki.service_account_key()
    out["encryption"] = pki.encryption_key()
    return out


def by_path(files):
    return {f.path: f for f in files}


def test_pod_ranges_are_kept_and_new_nodes_take_the_lowest_free_one():
    first = allocate_pod_cidrs("10.244.0.0/16", ["a", "b", "c"], {})
    assert first == {"a": "10.244.0.0/24", "b": "10.244.1.0/24", "c": "10.244.2.0/24"}
    later = allocate_pod_cidrs("10.244.0.0/16", ["a", "c", "d"], {"a": first["a"], "c": first["c"]})
    assert later == {"a": "10.244.0.0/24", "c": "10.244.2.0/24", "d": "10.244.1.0/24"}


def test_plan_addresses():
    assert PLAN.api_server == "https://192.168.122.10:6443"
    assert PLAN.service_ip == "10.96.0.1"
    assert [n.name for n in PLAN.control_planes] == ["dev-cp-1"]


def test_wanted_certificates_cover_every_component_and_node():
    want = wanted_certs(PLAN)
    assert {"apiserver", "admin", "kube-proxy", "etcd-server-dev-cp-1", "kubelet-dev-w-1"} <= set(want)
    assert "etcd-server-dev-w-1" not in want
    ca, api = want["apiserver"]
    assert ca == "cluster-ca" and "192.168.122.10" in api.ips and "10.96.0.1" in api.ips
    assert want["kubelet-dev-w-1"][1].cn == "system:node:dev-w-1"


def test_control_plane_files_wire_the_components_together():
    c = certs()
    files = by_path(render.control_plane_files(PLAN, PLAN.nodes[0], c))
    api = files["/etc/systemd/system/kube-apiserver.service"].content.decode()
    assert "--etcd-servers=https://192.168.122.10:2379" in api
    assert "--service-cluster-ip-range=10.96.0.0/12" in api and "--authorization-mode=Node,RBAC" in api
    etcd = files["/etc/systemd/system/etcd.service"].content.decode()
    assert "--initial-cluster=dev-cp-1=https://192.168.122.10:2380" in etcd
    assert files["/etc/kubernetes/pki/ca.key"].mode == 0o600
    assert "--leader-elect=false" in files["/etc/systemd/system/kube-controller-manager.service"].content.decode()
    admin = yaml.safe_load(files["/etc/kubernetes/admin.conf"].content)
    assert admin["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"


def test_node_files_carry_the_pod_range_routes_and_allowed_labels_only():
    files = by_path(render.node_files(PLAN, PLAN.nodes[1], certs(), {"vmkube.local/pause:3.10": b"tar"}))
    kubelet = yaml.safe_load(files["/var/lib/kubelet/config.yaml"].content)
    assert kubelet["podCIDR"] == "10.244.1.0/24" and kubelet["cgroupDriver"] == "systemd"
    cni = json.loads(files["/etc/cni/net.d/10-vmkube.conflist"].content)
    assert cni["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24"}]]
    routes = files["/etc/systemd/system/vmkube-routes.service"].content.decode()
    assert "ip route replace 10.244.0.0/24 via 192.168.122.10" in routes and "10.244.1.0/24" not in routes
    unit = files["/etc/systemd/system/kubelet.service"].content.decode()
    assert "--node-labels=tier=general" in unit and "node-role" not in unit
    assert "--node-ip=192.168.122.11" in unit
    kubeconfig = yaml.safe_load(files["/etc/kubernetes/kubelet.conf"].content)
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"  # the local load balancer
    assert 'sandbox_image = "registry.k8s.io/pause:3.10"' in files["/etc/containerd/config.toml"].content.decode()


def test_control_plane_taint_is_registered_by_the_kubelet():
    files = by_path(render.node_files(PLAN, PLAN.nodes[0], certs(), {"vmkube.local/pause:3.10": b"tar"}))
    kubelet = yaml.safe_load(files["/var/lib/kubelet/config.yaml"].content)
    assert kubelet["registerWithTaints"] == [{"key": "node-role.kubernetes.io/control-plane", "value": "",
                                              "effect": "NoSchedule"}]


def test_image_tarball_is_a_loadable_docker_archive():
    data = oci.image_tar("vmkube.local/pause:3.10", {"pause": (b"\x7fELF...", 0o755)}, ["/pause"])
    assert data == oci.image_tar("vmkube.local/pause:3.10", {"pause": (b"\x7fELF...", 0o755)}, ["/pause"])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        [entry] = manifest
        assert entry["RepoTags"] == ["vmkube.local/pause:3.10"]
        config = json.load(tar.extractfile(entry["Config"]))
        layer = tar.extractfile(entry["Layers"][0]).read()
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"]["Entrypoint"] == ["/pause"]
    with tarfile.open(fileobj=io.BytesIO(layer)) as inner:
        member = inner.getmember("pause")
        assert member.mode == 0o755 and inner.extractfile(member).read() == b"\x7fELF..."


THREE = Plan("ha", "1.34.4", "10.244.0.0/16", "10.96.0.0/12", tuple(
    PlanNode(f"ha-cp-{i}", "control-plane", f"192.168.122.{10 + i}", f"10.244.{i}.0/24") for i in (1, 2, 3)
) + (PlanNode("ha-w-1", "worker", "192.168.122.21", "10.244.4.0/24"),), endpoint="api.ha.example.org")


def test_workers_reach_every_api_server_through_a_local_haproxy():
    cfg = by_path(render.worker_files(THREE))[render.HAPROXY_CONFIG].content.decode()
    assert "bind 127.0.0.1:6443" in cfg
    servers = [line.split()[1:] for line in cfg.splitlines() if line.strip().startswith("server ")]
    checked = [s[:2] for s in servers if "check" in s]
    assert checked == [["ha-cp-1", "192.168.122.11:6443"], ["ha-cp-2", "192.168.122.12:6443"],
                       ["ha-cp-3", "192.168.122.13:6443"]]
    assert "option httpchk GET /readyz" in cfg and "check-ssl" in cfg
    # While every check fails (servers too busy to answer in time), all of them take connections.
    assert [s for s in servers if "check" not in s] == [
        ["ha-cp-1-unchecked", "192.168.122.11:6443", "backup"], ["ha-cp-2-unchecked", "192.168.122.12:6443", "backup"],
        ["ha-cp-3-unchecked", "192.168.122.13:6443", "backup"]]
    assert "option allbackups" in cfg and "timeout check 15s" in cfg
    # A connection to a server that is down but not yet marked so is retried elsewhere at once.
    assert "retries 3" in cfg and "option redispatch 1" in cfg


def test_with_one_control_plane_haproxy_never_marks_it_down():
    one = Plan("one", "1.34.4", "10.244.0.0/16", "10.96.0.0/12", (
        PlanNode("one-cp-1", "control-plane", "192.168.122.11", "10.244.0.0/24"),
        PlanNode("one-w-1", "worker", "192.168.122.21", "10.244.1.0/24")))
    cfg = by_path(render.worker_files(one))[render.HAPROXY_CONFIG].content.decode()
    servers = [line.split()[1:] for line in cfg.splitlines() if line.strip().startswith("server ")]
    # A check could only cut the worker off from a server that is slow (it was: a loaded
    # emulated control plane failed its TLS check in 5 s and the worker never registered).
    assert servers == [["one-cp-1", "192.168.122.11:6443"]]
    assert "httpchk" not in cfg


def test_three_control_planes_form_one_etcd_cluster_and_elect_leaders():
    files = by_path(render.control_plane_files(THREE, THREE.nodes[1], three_certs()))
    etcd = files["/etc/systemd/system/etcd.service"].content.decode()
    assert ("--initial-cluster=ha-cp-1=https://192.168.122.11:2380,ha-cp-2=https://192.168.122.12:2380,"
            "ha-cp-3=https://192.168.122.13:2380") in etcd
    assert "--heartbeat-interval=250" in etcd and "--election-timeout=2500" in etcd
    one = by_path(render.control_plane_files(PLAN, PLAN.nodes[0], certs()))["/etc/systemd/system/etcd.service"]
    assert "--election-timeout" not in one.content.decode()  # a single member holds no elections
    api = files["/etc/systemd/system/kube-apiserver.service"].content.decode()
    assert "--etcd-servers=https://192.168.122.11:2379,https://192.168.122.12:2379,https://192.168.122.13:2379" in api
    assert "--leader-elect=true" in files["/etc/systemd/system/kube-scheduler.service"].content.decode()


def three_certs():
    out = pki.ensure({}, wanted_certs(THREE), CAS)
    out["service-account"] = pki.service_account_key()
    out["encryption"] = pki.encryption_key()
    return out


def test_the_operator_endpoint_is_in_the_api_certificate_and_the_kubeconfig():
    _ca, api = wanted_certs(THREE)["apiserver"]
    assert "api.ha.example.org" in api.dns and {"192.168.122.11", "192.168.122.13", "127.0.0.1"} <= set(api.ips)
    assert THREE.api_server == "https://api.ha.example.org:6443"
    assert PLAN.api_server == "https://192.168.122.10:6443"  # without one: the first control plane


def test_the_demo_app_is_preloaded_in_two_tags_only_when_asked_for(tmp_path):
    from vmkube.bootstrap import preload
    from vmkube.bootstrap.addons import images
    from vmkube.contracts import BinarySource
    (tmp_path / "pause").write_bytes(b"pause-binary")
    (tmp_path / "hello").write_bytes(b"hello-binary")
    names = images("1.34.4", "registry.k8s.io")
    assert list(preload.preloaded(BinarySource("toolchain", pause=str(tmp_path)), names)) == ["registry.k8s.io/pause:3.10"]
    both = preload.preloaded(BinarySource("toolchain", pause=str(tmp_path), hello=str(tmp_path)), names)
    assert sorted(both) == ["registry.k8s.io/pause:3.10", "vmkube.local/hello:1.0", "vmkube.local/hello:1.1"]
    assert both["vmkube.local/hello:1.0"] != both["vmkube.local/hello:1.1"]  # different config: a real rollout
    files = by_path(render.node_files(PLAN, PLAN.nodes[1], certs(), both))
    assert files["/var/lib/vmkube/images/hello-1.1.tar"].content == both["vmkube.local/hello:1.1"]
    assert files["/var/lib/vmkube/images/pause-3.10.tar"].content == both["registry.k8s.io/pause:3.10"]
