"""Every bootstrap phase as a table: facts -> the commands it decides -> the facts
after those commands -> no command. A phase that would act again on a node it just
converged fails here, in milliseconds, long before the VM test would see it.

Facts are canned (what each fact command's parser returns); the "after" facts are
what the node reports once the decided commands ran. The commands themselves run
on real OpenSSH in tests/integration and on real VMs in tests/e2e."""

from __future__ import annotations

import dataclasses

import pytest

from vmkube import pki
from vmkube.bootstrap import render
from vmkube.bootstrap.configure import KERNEL_RELOAD, configure
from vmkube.bootstrap.desired import Desired
from vmkube.bootstrap.kubectl import KUBECTL
from vmkube.bootstrap.leave import NodeObject, decide_leave
from vmkube.bootstrap.marker import MARK, decide_mark
from vmkube.bootstrap.plan import CAS, Plan, PlanNode, wanted_certs
from vmkube.bootstrap.preflight import MODULES, Facts, Preflight, parse_facts
from vmkube.bootstrap.preload import ImportImages, parse_listed, tar_path
from vmkube.bootstrap.render import DEFAULT_SANDBOX_IMAGE as PAUSE_IMAGE
from vmkube.bootstrap.readiness import ROLE_LABEL, decide_labels, ready_nodes
from vmkube.bootstrap.services import RollingRestart, Services, decide_units, parse_states, states_script
from vmkube.nodes.files import Files, FileSpec, parse_state
from vmkube.nodes.phases import Command, Node, Upload

PLAN = Plan("t", "1.34.4", "10.244.0.0/16", "10.96.0.0/12", (
    PlanNode("t-cp-1", "control-plane", "192.168.122.10", "10.244.0.0/24"),
    PlanNode("t-w-1", "worker", "192.168.122.11", "10.244.1.0/24", labels={"node-role.kubernetes.io/worker": ""}),
))
CP = Node("t-cp-1", "control-plane", "192.168.122.10", session=None)
WORKER = Node("t-w-1", "worker", "192.168.122.11", session=None)


def certs():
    out = pki.ensure({}, wanted_certs(PLAN), CAS)
    out["service-account"] = pki.service_account_key()
    out["encryption"] = pki.encryption_key()
    return out


def desired(changed=None, images=None) -> Desired:
    return Desired(PLAN, {}, {}, images or {}, changed=dict(changed or {}))


def argv(steps) -> list[str]:
    return [s.argv if isinstance(s.argv, str) else " ".join(s.argv) for s in steps if isinstance(s, Command)]


# -- preflight -----------------------------------------------------------------------------

GOOD = Facts(os="debian", os_version="12", arch="x86_64", mem_mib=2000, disk_free_mib=8000, swap_devices=0,
             modules={m: True for m in MODULES}, ports=frozenset({22}), bootstrapped=False, sudo=True,
             skew_seconds=0.0)


@pytest.mark.parametrize("change, problem", [
    ({"swap_devices": 1}, "swap is on"),
    ({"ports": frozenset({22, 6443})}, "port 6443 already in use"),
    ({"sudo": False}, "cannot run sudo"),
    ({"skew_seconds": 3600.0}, "clock is +3600s off"),
    ({"mem_mib": 900}, "900 MiB of memory, the stack asks for 2048 MiB"),
    # haproxy runs on workers only: a control plane without it is fine.
    ({"missing_commands": frozenset({"curl", "haproxy"})}, "command curl not found (the node image needs the package curl)"),
    ({"missing_commands": frozenset({"ctr", "containerd", "runc"})},
     "commands containerd, ctr, runc not found (the node image needs the packages containerd, runc)"),
])
def test_preflight_decides_problems_never_commands(change, problem):
    phase = Preflight(memory_mb={"t-cp-1": 2048})
    found = phase.decide(CP, dataclasses.replace(GOOD, **change))
    assert len(found) == 1 and problem in found[0], found
    assert phase.decide(CP, GOOD) == []  # the node as it should be: nothing to report
    # Ports held by vmkube's own services are fine once a run installed them.
    assert phase.decide(CP, dataclasses.replace(GOOD, ports=frozenset({6443}), bootstrapped=True)) == []


def test_preflight_facts_parse_from_the_script_output():
    out = ("started_up=100.00\nos=debian\nos_version=12\narch=x86_64\nmem_mib=1950\ndisk_free_mib=7000\n"
           "swap_devices=0\nmodule_br_netfilter=1\nmodule_overlay=1\nports=22 53 \nbootstrapped=0\nsudo=1\n"
           "missing=haproxy conntrack \n"
           "now=1000.50\nnow_up=100.10\n")
    facts = parse_facts(out, sent=1000.0, received=1000.4)
    assert (facts.os, facts.arch, facts.mem_mib, facts.ports, facts.sudo) == ("debian", "x86_64", 1950,
                                                                               frozenset({22, 53}), True)
    assert facts.missing_commands == {"haproxy", "conntrack"}
    assert abs(facts.skew_seconds) < 1


# -- files (configure) ----------------------------------------------------------------------

def test_configure_uploads_the_delta_reloads_kernel_settings_then_nothing():
    files = [FileSpec("/etc/sysctl.d/90-vmkube.conf", b"net.ipv4.ip_forward = 1\n"),
             FileSpec("/etc/kubernetes/pki/ca.key", b"key", 0o600), FileSpec("/usr/local/bin/kubelet", b"ELF", 0o755)]
    phase = Files("configure", lambda _n: files, on_change=configure(desired()).on_change)
    before = {files[0].path: None, files[1].path: ("0" * 64, 0o600), files[2].path: (files[2].digest, 0o755)}
    steps = phase.decide(CP, before)
    assert [type(s).__name__ for s in steps] == ["Upload", "Command"]
    assert [f.path for f in steps[0].files] == [files[0].path, files[1].path]  # kubelet is already there
    assert steps[1] == KERNEL_RELOAD
    after = {f.path: (f.digest, f.mode) for f in files}
    assert phase.decide(CP, after) == []


def test_a_mode_change_alone_is_an_upload_without_a_kernel_reload():
    files = [FileSpec("/etc/kubernetes/admin.conf", b"x", 0o600)]
    phase = Files("configure", lambda _n: files, on_change=configure(desired()).on_change)
    steps = phase.decide(CP, {files[0].path: (files[0].digest, 0o644)})
    assert [type(s) for s in steps] == [Upload]
    assert phase.decide(CP, {files[0].path: (files[0].digest, 0o600)}) == []


def test_file_state_parses_digest_mode_and_missing():
    out = f"{'a' * 64} 600 /etc/x\n- - /etc/missing file\n"
    assert parse_state(out) == {"/etc/x": ("a" * 64, 0o600), "/etc/missing file": None}


def test_every_file_a_real_node_gets_converges_in_one_decision():
    d = Desired(PLAN, certs(), {}, {})
    d._binary_files.update({b: FileSpec(f"/usr/local/bin/{b}", b"bin", 0o755) for b in
                            ("etcd", "etcdctl", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                             "kubectl", "kubelet", "kube-proxy")})
    phase = configure(d)
    for node in (CP, WORKER):
        steps = phase.decide(node, {})
        assert isinstance(steps[0], Upload) and len(steps[0].files) == len(d.files_for(node))
        converged = {f.path: (f.digest, f.mode) for f in d.files_for(node)}
        assert phase.decide(node, converged) == []


# -- preloaded images ----------------------------------------------------------------------

def test_images_are_imported_once_and_again_only_when_their_archive_changed():
    images = {PAUSE_IMAGE: b"tar", "vmkube.local/hello:1.0": b"tar"}
    phase = ImportImages(desired(images=images))
    assert argv(phase.decide(CP, set())) == [
        "systemctl start containerd", f"ctr -n k8s.io images import {tar_path(PAUSE_IMAGE)}",
        f"ctr -n k8s.io images import {tar_path('vmkube.local/hello:1.0')}"]
    after = parse_listed(f"{PAUSE_IMAGE}\nvmkube.local/hello:1.0\n")
    assert phase.decide(CP, after) == []
    rebuilt = ImportImages(desired(changed={"t-cp-1": [tar_path(PAUSE_IMAGE)]}, images=images))
    assert argv(rebuilt.decide(CP, after)) == ["systemctl start containerd",
                                               f"ctr -n k8s.io images import {tar_path(PAUSE_IMAGE)}"]


# -- services ---------------------------------------------------------------------------------

UNITS = ("containerd", "kubelet")


def test_services_enable_start_and_restart_what_changed_then_nothing():
    states = parse_states("containerd active enabled\nkubelet inactive disabled\n")
    changed = {"t-w-1": ["/etc/systemd/system/kubelet.service", "/etc/containerd/config.toml"]}
    phase = Services(desired(changed=changed), UNITS, ("worker",))
    assert argv(phase.decide(WORKER, states)) == [
        "systemctl daemon-reload", "systemctl restart containerd", "systemctl enable kubelet",
        "systemctl restart kubelet"]
    after = parse_states("containerd active enabled\nkubelet active enabled\n")
    assert Services(desired(), UNITS, ("worker",)).decide(WORKER, after) == []


def test_unit_state_script_reads_every_unit_in_one_command():
    assert states_script(UNITS).startswith("for u in containerd kubelet; do")
    assert parse_states("etcd failed\n") == {"etcd": ("failed", "unknown")}


def test_with_several_control_planes_changed_units_are_left_to_the_rolling_restart():
    running = parse_states("".join(f"{u} active enabled\n" for u in render.CONTROL_PLANE_UNITS))
    changed = {"t-cp-1": ["/etc/systemd/system/etcd.service"]}
    services = Services(desired(changed=changed), render.CONTROL_PLANE_UNITS, ("control-plane",), rolling=True)
    assert argv(services.decide(CP, running)) == ["systemctl daemon-reload"]
    rolling = RollingRestart(desired(changed=changed), render.CONTROL_PLANE_UNITS, ready=lambda _n: None)
    assert rolling.applies(CP) and argv(rolling.decide(CP, running)) == ["systemctl restart etcd"]
    after = RollingRestart(desired(), render.CONTROL_PLANE_UNITS, ready=lambda _n: None)
    assert not after.applies(CP) and after.decide(CP, running) == []


def test_a_stopped_unit_is_started_even_when_nothing_changed():
    assert argv(decide_units(UNITS, {"containerd": ("failed", "enabled"), "kubelet": ("active", "enabled")}, [])) \
        == ["systemctl restart containerd"]


# -- readiness and labels -------------------------------------------------------------------

def node_item(name: str, ready: bool, labels=None) -> dict:
    return {"metadata": {"name": name, "labels": labels or {}},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_labels_only_an_admin_may_set_are_set_once():
    items = ready_nodes([node_item("t-cp-1", True), node_item("t-w-1", True), node_item("x", False)])
    assert set(items) == {"t-cp-1", "t-w-1"}
    steps = decide_labels(PLAN, items)
    assert [s.argv.split(KUBECTL + " ")[1] for s in steps] == [
        f"label node t-cp-1 --overwrite {ROLE_LABEL}=", "label node t-w-1 --overwrite node-role.kubernetes.io/worker="]
    after = ready_nodes([node_item("t-cp-1", True, {ROLE_LABEL: ""}),
                         node_item("t-w-1", True, {"node-role.kubernetes.io/worker": ""})])
    assert decide_labels(PLAN, after) == []


# -- the bootstrapped mark ------------------------------------------------------------------

def test_the_mark_is_made_once():
    assert decide_mark(False) == [MARK]
    assert decide_mark(True) == []


# -- a worker leaving -------------------------------------------------------------------------

def test_a_leaving_worker_is_cordoned_drained_stopped_and_deleted_then_nothing():
    steps = decide_leave("t-w-1", NodeObject(exists=True, cordoned=False))
    assert [(s.where, s.kind or s.command.why.split(" ")[0]) for s in steps] == [
        ("control-plane", "cordoning"), ("control-plane", "drain"), ("node", "stop"), ("control-plane", "deleting")]
    # Stopped half-way, cordoned already: the next run goes on from the drain.
    resumed = decide_leave("t-w-1", NodeObject(exists=True, cordoned=True))
    assert [s.kind or s.command.why.split(" ")[0] for s in resumed] == ["drain", "stop", "deleting"]
    assert decide_leave("t-w-1", NodeObject(exists=False)) == []
