"""Certificate renewal as tables: certificates (the facts) -> what `up` reissues and
which units it restarts -> the same facts after -> nothing.

A leaf inside vmkube:pki.renewBeforeDays of its end is issued again, one outside is
kept, a CA is never reissued by itself (a warning names it a year ahead). Certificates
are real (vmkube.pki, cryptography); node facts are canned as in test_phase_tables.py:
what each fact command's parser returns. Clocks are passed in, never patched."""

from __future__ import annotations

import datetime as dt

import pulumi
import pytest

from vmkube import pki
from vmkube.bootstrap import render
from vmkube.bootstrap.configure import configure
from vmkube.bootstrap.converge import NODE_AGENTS
from vmkube.bootstrap.desired import Desired
from vmkube.bootstrap.plan import CAS, wanted_certs
from vmkube.bootstrap.services import RollingRestart, Services, parse_states
from vmkube.contracts import BootstrapInputs, BootstrapState, CertPair, PkiPolicy
from vmkube.nodes.files import FileSpec
from vmkube.nodes.phases import Upload
from vmkube.roles import ALL as ALL_ROLES

from tests.unit.test_contracts import INPUTS, through_engine
from tests.unit.test_phase_tables import CP, PLAN, WORKER, argv

NOW = dt.datetime.now(dt.timezone.utc)
SHORT = pki.Lifetimes(leaf=dt.timedelta(minutes=10))  # what a test issues to watch it renewed
DEFAULT = pki.Lifetimes()
LEAVES = set(wanted_certs(PLAN))


def issued(lifetimes: pki.Lifetimes = DEFAULT, existing=None) -> dict[str, pki.CertKey]:
    out = pki.ensure(existing or {}, wanted_certs(PLAN), CAS, lifetimes)
    out["service-account"] = (existing or {}).get("service-account") or pki.service_account_key()
    out["encryption"] = (existing or {}).get("encryption") or pki.encryption_key()
    return out


def public(certs) -> dict[str, str]:
    return {k: v.cert for k, v in certs.items()}


# -- which certificates: inside the window reissued, outside kept, CAs kept --------------

def test_a_leaf_issued_to_expire_within_minutes_is_renewed_once_then_kept():
    start = dt.datetime.now(dt.timezone.utc)  # not NOW, taken at import: the suite may run long before this
    short = issued(SHORT)
    assert all(pki.not_after(short[n].cert) - start < dt.timedelta(minutes=11) for n in LEAVES)
    due = pki.reissues(short, wanted_certs(PLAN), CAS, DEFAULT)
    assert set(due) == LEAVES and all("less than 90 days from now" in why for why in due.values()), due

    renewed = issued(DEFAULT, short)
    assert all(renewed[n] != short[n] for n in LEAVES)
    assert all(renewed[n] == short[n] for n in (*CAS, "service-account", "encryption"))
    for n in LEAVES:  # still chained to the same CA, for the same names, for two years now
        ca = wanted_certs(PLAN)[n][0]
        assert pki.matches(renewed[n], renewed[ca], wanted_certs(PLAN)[n][1])
        assert pki.not_after(renewed[n].cert) - NOW > dt.timedelta(days=729)
    # The facts after: nothing due, and the next ensure keeps every certificate as it is.
    assert pki.reissues(renewed, wanted_certs(PLAN), CAS, DEFAULT) == {}
    assert issued(DEFAULT, renewed) == renewed


@pytest.mark.parametrize("days_left, renew_before_days, reissued", [
    (89, 90, True), (91, 90, False), (29, 30, True), (31, 30, False), (200, 365, True)])
def test_the_window_decides(days_left, renew_before_days, reissued):
    certs = issued()
    later = NOW + dt.timedelta(days=730 - days_left)  # the same certificates, seen that much later
    window = pki.Lifetimes(renew_before=dt.timedelta(days=renew_before_days))
    assert pki.matches(certs["apiserver"], certs["cluster-ca"], wanted_certs(PLAN)["apiserver"][1],
                       window, now=later) is not reissued
    assert (pki.expiring(public(certs), window, later) == sorted(LEAVES)) is reissued
    after = pki.ensure(certs, wanted_certs(PLAN), CAS, window, now=later)
    assert (after["kubelet-t-w-1"] != certs["kubelet-t-w-1"]) is reissued


def test_a_ca_is_never_reissued_by_itself_and_is_warned_about_a_year_ahead():
    certs = issued()
    ten_years = pki.not_after(certs["cluster-ca"].cert)
    assert pki.ca_warnings(public(certs), now=NOW) == []  # ten years left
    late = ten_years - dt.timedelta(days=200)
    warnings = pki.ca_warnings(public(certs), now=late)
    assert len(warnings) == len(CAS)
    assert warnings[0].startswith("the cluster's CA cluster-ca (CN=vmkube-cluster-ca) expires "
                                  f"{ten_years:%Y-%m-%d}"), warnings
    # Due leaves are renewed under the same CA, kept as it is: nothing signed by it is orphaned.
    after = pki.ensure(certs, wanted_certs(PLAN), CAS, now=ten_years - dt.timedelta(days=10))
    assert all(after[ca] == certs[ca] for ca in CAS)
    assert "cluster-ca" not in pki.expiring(public(certs), DEFAULT, ten_years)
    assert "expired" in pki.ca_warnings(public(certs), now=ten_years + dt.timedelta(days=1))[0]


def test_the_expiry_list_holds_certificates_and_dates_only():
    certs = issued()
    listed = pki.expiries(public(certs))
    assert set(listed) == LEAVES | set(CAS)  # not the service-account key pair nor the encryption key
    assert all(dt.datetime.strptime(v, "%Y-%m-%dT%H:%M:%SZ") for v in listed.values())
    assert listed["apiserver"] == f"{pki.not_after(certs['apiserver'].cert):%Y-%m-%dT%H:%M:%SZ}"


# -- the nodes: renewed files -> restarts, one node at a time -> nothing --------------------

BINARIES = ("etcd", "etcdctl", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl",
            "kubelet", "kube-proxy")
RUNNING = parse_states("".join(f"{u} active enabled\n" for u in (*render.CONTROL_PLANE_UNITS, *NODE_AGENTS)))


def desired_with(certs) -> Desired:
    d = Desired(PLAN, certs, {}, {})
    d._binary_files.update({b: FileSpec(f"/usr/local/bin/{b}", b"bin", 0o755) for b in BINARIES})
    return d


def on_node(d: Desired, node) -> dict[str, tuple[str, int]]:
    return {f.path: (f.digest, f.mode) for f in d.files_for(node)}


def test_renewed_certificates_upload_their_files_and_restart_what_reads_them_then_nothing():
    short = issued(SHORT)
    before = {n.name: on_node(desired_with(short), n) for n in (CP, WORKER)}  # the nodes as the last run left them
    d = desired_with(issued(DEFAULT, short))
    files = configure(d)
    for node in (CP, WORKER):
        [upload] = files.decide(node, before[node.name])
        assert isinstance(upload, Upload)
        d.changed[node.name] = [f.path for f in upload.files]
    assert {p for p in d.changed["t-w-1"]} == {"/var/lib/kubelet/pki/kubelet.crt", "/var/lib/kubelet/pki/kubelet.key",
                                               "/etc/kubernetes/kubelet.conf", "/etc/kubernetes/kube-proxy.conf"}
    assert f"{render.PKI_DIR}/apiserver.crt" in d.changed["t-cp-1"]
    assert f"{render.PKI_DIR}/ca.crt" not in d.changed["t-cp-1"]  # the CA stays

    # One control plane: its components restart in the services phase; the node agents roll.
    control_plane = Services(d, render.CONTROL_PLANE_UNITS, ("control-plane",))
    assert argv(control_plane.decide(CP, RUNNING)) == [f"systemctl restart {u}" for u in render.CONTROL_PLANE_UNITS]
    agents = Services(d, NODE_AGENTS, ALL_ROLES, rolling=True)
    assert argv(agents.decide(CP, RUNNING)) == argv(agents.decide(WORKER, RUNNING)) == []
    rolling = RollingRestart(d, NODE_AGENTS, ready=lambda _n: None, roles=ALL_ROLES)
    assert rolling.mode == "serial" and rolling.applies(CP) and rolling.applies(WORKER)
    assert argv(rolling.decide(WORKER, RUNNING)) == ["systemctl restart kubelet", "systemctl restart kube-proxy"]

    # The facts after: the files are there, nothing changed, nothing restarts.
    after = Desired(PLAN, d.certs, {}, {}, _binary_files=d._binary_files)
    for node in (CP, WORKER):
        assert configure(after).decide(node, on_node(d, node)) == []
        assert not RollingRestart(after, NODE_AGENTS, ready=lambda _n: None, roles=ALL_ROLES).applies(node)
    assert Services(after, render.CONTROL_PLANE_UNITS, ("control-plane",)).decide(CP, RUNNING) == []


def test_a_unit_started_this_run_is_not_restarted_again_by_the_rolling_phase():
    d = Desired(PLAN, {}, {}, {}, changed={"t-w-1": ["/etc/kubernetes/kubelet.conf"]})
    stopped = parse_states("kubelet inactive enabled\nkube-proxy active enabled\n")

    class Ran:
        def run(self, *_a, **_k):
            from vmkube.nodes.ssh import Result
            return Result("", 0, "kubelet inactive enabled\nkube-proxy active enabled\n", "")
    node = WORKER.__class__(WORKER.name, WORKER.role, WORKER.address, session=Ran())
    services = Services(d, NODE_AGENTS, ALL_ROLES, rolling=True)
    assert argv(services.decide(node, stopped)) == ["systemctl restart kubelet"]  # starting it
    services.run(node)
    assert d.started["t-w-1"] == {"kubelet"}
    rolling = RollingRestart(d, NODE_AGENTS, ready=lambda _n: None, roles=ALL_ROLES)
    assert not rolling.applies(node)  # kube-proxy's inputs did not change; kubelet just started
    assert argv(rolling.decide(node, parse_states("kubelet active enabled\nkube-proxy active enabled\n"))) == []


# -- the engine's view: a due certificate runs the bootstrap -------------------------------

def state_props(certs) -> dict:
    state = BootstrapState(pki={k: CertPair(v.cert, v.key) for k, v in certs.items()})
    props = {**INPUTS.to_props(), **state.to_props()}
    props["nodeStatus"] = [{"name": n.name, "ready": True} for n in INPUTS.nodes]
    return props


def test_a_due_certificate_makes_up_run_the_bootstrap_and_a_fresh_set_does_not():
    from vmkube.stack.bootstrap import needs_run
    news = INPUTS.to_props()
    assert needs_run(state_props(issued(SHORT)), news)
    assert not needs_run(state_props(issued()), news)
    # Two-year certificates, seen 600 days on (130 left) and 700 days on (30 left).
    assert not needs_run(state_props(issued()), news, now=NOW + dt.timedelta(days=600))
    assert needs_run(state_props(issued()), news, now=NOW + dt.timedelta(days=700))
    # The window is the new inputs' own: widened to 180 days, the 130-day-old view is due too.
    from dataclasses import replace
    wide = replace(INPUTS, pki_policy=PkiPolicy(renew_before_days=180)).to_props()
    assert needs_run(state_props(issued()), wide, now=NOW + dt.timedelta(days=600))


def test_the_renewal_policy_crosses_the_engine():
    from dataclasses import replace
    policy = PkiPolicy(renew_before_days=30, leaf_lifetime_seconds=600)
    inputs = replace(INPUTS, pki_policy=policy)
    assert BootstrapInputs.from_props(through_engine(inputs.to_props())) == inputs
    old = {k: v for k, v in INPUTS.to_props().items() if k != "pkiPolicy"}  # a state from before renewal
    assert BootstrapInputs.from_props(old).pki_policy == PkiPolicy()
    assert PkiPolicy().lifetimes() == pki.Lifetimes()
    assert policy.lifetimes() == pki.Lifetimes(renew_before=dt.timedelta(days=30), leaf=dt.timedelta(minutes=10))


# -- the setting ---------------------------------------------------------------------------

def test_the_window_is_kept_through_cluster_args_and_a_bad_one_names_its_field():
    from vmkube import config
    from vmkube.args import ClusterArgs, raw_config, validated
    from vmkube.config import LibvirtSpec, PkiSpec
    from vmkube.errors import ConfigError
    spec = config.load({"hypervisor": "libvirt", "pki": {"renewBeforeDays": 30}}, stack="t")
    assert spec.pki.renew_before_days == 30
    assert config.load({"hypervisor": "libvirt"}, stack="t").pki == PkiSpec(renew_before_days=90)
    again, secrets = raw_config(spec.name, ClusterArgs.from_spec(spec))
    assert config.load(again, stack="t", secret_keys=secrets) == spec
    with pytest.raises(ConfigError) as err:
        validated("t", ClusterArgs(hypervisor=LibvirtSpec(), pki=PkiSpec(renew_before_days=0)))
    assert "ClusterArgs.pki.renew_before_days: must be at least 1 (got 0)" in err.value.problems


def test_the_short_test_lifetime_is_read_per_run_and_checked():
    from vmkube import config
    from vmkube.stack.certificates import LEAF_LIFETIME_ENV, pki_policy
    spec = config.load({"hypervisor": "libvirt", "pki": {"renewBeforeDays": 30}}, stack="t")
    assert pki_policy(spec, env={}) == PkiPolicy(renew_before_days=30)
    assert pki_policy(spec, env={LEAF_LIFETIME_ENV: "600"}) == PkiPolicy(30, leaf_lifetime_seconds=600)
    with pytest.raises(pulumi.RunError, match=f"{LEAF_LIFETIME_ENV}: must be a whole number of seconds"):
        pki_policy(spec, env={LEAF_LIFETIME_ENV: "5"})


def test_the_stack_output_lists_dates_only_and_warns_about_a_ca_near_its_end(monkeypatch):
    from vmkube.stack.certificates import expiry_list
    certs = issued()
    entries = {k: {"cert": v.cert, "key": v.key} for k, v in certs.items()}
    warned = []
    monkeypatch.setattr(pulumi.log, "warn", lambda msg, *a, **k: warned.append(msg))
    listed = expiry_list(entries, "lab")
    assert listed == pki.expiries(public(certs)) and warned == []
    assert not any("PRIVATE" in v or "BEGIN" in v for v in listed.values())
    old_ca = pki.CertKey(*_ca_ending_in(dt.timedelta(days=100)))
    expiry_list({**entries, "cluster-ca": {"cert": old_ca.cert, "key": old_ca.key}}, "lab")
    assert len(warned) == 1 and warned[0].startswith("cluster lab: the cluster's CA cluster-ca (CN=old-ca) expires")


def _ca_ending_in(left: dt.timedelta) -> tuple[str, str]:
    """A CA made as vmkube makes one, seen as if it were that close to its end (its dates moved back)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "old-ca")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(NOW - dt.timedelta(days=3000)).not_valid_after(NOW + left)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


# -- make certs ----------------------------------------------------------------------------

def test_make_certs_lists_each_certificate_soonest_first_and_marks_what_up_renews(tmp_path):
    """tools/certs.py through tools/pulumi, with a fake CLI answering for a stack."""
    import json
    import os
    import subprocess
    from tests.helpers import ROOT
    certs = issued(SHORT)
    listed = pki.expiries(public(certs))
    fake = tmp_path / "bin"
    fake.mkdir()
    (tmp_path / "outputs.json").write_text(json.dumps({"certificates": listed, "kubeconfig": "[secret]"}))
    (fake / "pulumi").write_text(
        '#!/bin/sh\n[ "$1" = plugin ] && mkdir -p "$PULUMI_HOME/plugins" && exit 0\n'
        f'[ "$1 $2" = "stack output" ] && exec cat {tmp_path}/outputs.json\n'
        '[ "$1" = config ] && echo 30 && exit 0\nexit 1\n')
    (fake / "pulumi").chmod(0o755)
    env = {**os.environ, "VMKUBE_PULUMI_BIN": str(fake), "PULUMI_HOME": str(tmp_path / "home"),
           "PULUMI_BACKEND_URL": f"file://{tmp_path}/state", "PULUMI_CONFIG_PASSPHRASE": "x"}
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "tools" / "certs.py"), "--stack", "t"],
                         capture_output=True, text=True, env=env, check=True).stdout
    lines = out.splitlines()
    assert lines[0] == (f"{len(listed)} certificates of stack t, soonest end first "
                        "(leaves are renewed within 30 days of their end):")
    leaves, cas = lines[1:1 + len(LEAVES)], lines[1 + len(LEAVES):]
    assert all(line.endswith("renewed by the next up") and " 0h " in line for line in leaves), out
    assert sorted(line.split()[0] for line in cas) == sorted(CAS) and all(line.endswith("  CA") for line in cas), out
    assert "PRIVATE" not in out and "BEGIN" not in out


# -- the component, under Pulumi's mocks (the engine itself runs in tests/engine) ------------

@pulumi.runtime.test
def test_the_component_passes_the_window_and_exports_dates_that_are_not_secret(monkeypatch):
    from tests.unit.test_stack_mocks import Recorder, SOURCE, spec_for
    from vmkube.stack import Cluster, ClusterArgs
    from vmkube.stack.certificates import LEAF_LIFETIME_ENV
    certs = issued()
    monkeypatch.delenv(LEAF_LIFETIME_ENV, raising=False)

    class WithPki(Recorder):
        def new_resource(self, args):
            name, outputs = super().new_resource(args)
            if args.typ.endswith("vmkube:Bootstrap"):
                outputs["pki"] = {k: {"cert": v.cert, "key": v.key} for k, v in certs.items()}
            return name, outputs
    mocks = WithPki()
    pulumi.runtime.set_mocks(mocks, project="vmkube", stack="t", preview=False)
    from dataclasses import replace
    from vmkube.config import PkiSpec
    spec = replace(spec_for("local"), pki=PkiSpec(renew_before_days=45))
    cluster = Cluster(spec.name, ClusterArgs.from_spec(spec), binaries=SOURCE)

    def check(args):
        listed, is_secret = args
        [boot] = [r for r in mocks.resources if r.typ.endswith("vmkube:Bootstrap")]
        assert boot.inputs["pkiPolicy"] == {"renewBeforeDays": 45, "leafLifetimeSeconds": 0}
        assert listed == pki.expiries(public(certs)) and is_secret is False

    return pulumi.Output.all(cluster.certificates, cluster.certificates.is_secret()).apply(check)



# -- the rolling order of node agents, on scripted sessions (no systemd in the SSH lab) -----

def test_changed_node_agents_restart_one_node_at_a_time_each_healthy_before_the_next():
    import threading
    from vmkube.bootstrap.readiness import AGENTS_HEALTHY, agents_healthy
    from vmkube.nodes.phases import Node, run_phases
    from vmkube.nodes.ssh import Result, quote
    events: list = []
    lock = threading.Lock()

    class Scripted:
        def __init__(self, name):
            self.name = name

        def run(self, command, **_kw):
            text = quote(command)
            with lock:
                if text.startswith("for u in"):
                    return Result(text, 0, "kubelet active enabled\nkube-proxy active enabled\n", "")
                if text.startswith("systemctl restart"):
                    events.append((self.name, text.split()[-1]))
                elif text == AGENTS_HEALTHY:
                    events.append((self.name, "healthy?"))
                return Result(text, 0, "ok", "")
    names = ("t-cp-1", "t-w-1", "t-w-2")
    nodes = [Node(n, "control-plane" if "cp" in n else "worker", "", Scripted(n)) for n in names]
    d = Desired(PLAN, {}, {}, {}, changed={n: ["/etc/kubernetes/kubelet.conf", "/etc/kubernetes/kube-proxy.conf"]
                                           for n in names})
    run_phases(nodes, [Services(d, NODE_AGENTS, ALL_ROLES, rolling=True),
                       RollingRestart(d, NODE_AGENTS, agents_healthy, roles=ALL_ROLES)])
    assert events == [e for n in names for e in ((n, "kubelet"), (n, "kube-proxy"), (n, "healthy?"))], events


def test_the_test_lifetime_drives_three_ups_short_then_renewed_then_nothing():
    """What an `up` with VMKUBE_TEST_LEAF_LIFETIME_SECONDS does to a running cluster, and the ups after."""
    from dataclasses import replace
    from vmkube.stack.bootstrap import needs_run
    short_policy = PkiPolicy(leaf_lifetime_seconds=900)
    two_years = issued()
    # 1. Set: leaves that would outlast 15 minutes are due, and come back lasting 15 minutes.
    assert needs_run(state_props(two_years), replace(INPUTS, pki_policy=short_policy).to_props())
    assert set(pki.reissues(two_years, wanted_certs(PLAN), CAS, short_policy.lifetimes())) == LEAVES
    start = dt.datetime.now(dt.timezone.utc)
    short = issued(short_policy.lifetimes(), two_years)
    assert all(pki.not_after(short[n].cert) - start < dt.timedelta(minutes=16) for n in LEAVES)
    # 2. Unset: the 15-minute leaves are inside the 90-day window, and come back lasting two years.
    assert needs_run(state_props(short), INPUTS.to_props())
    renewed = issued(DEFAULT, short)
    assert all(pki.not_after(renewed[n].cert) - NOW > dt.timedelta(days=729) for n in LEAVES)
    # 3. Nothing is due: the bootstrap does not run.
    assert not needs_run(state_props(renewed), INPUTS.to_props())
