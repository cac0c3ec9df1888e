"""Certificates issued to expire within minutes are renewed, and the API answers throughout.

Three real control planes on loopback (tests/fixtures/kube.py: etcd, kube-apiserver,
controller manager and scheduler with vmkube's flags, behind the haproxy vmkube puts
on workers) start with leaf certificates that last 15 minutes. Renewal then goes as
`up` does it: vmkube.pki.ensure reissues every leaf inside the window and keeps the
CAs; the files vmkube renders for each control plane are compared by digest, as the
files phase does; vmkube.bootstrap.services.touched picks the components whose files
changed; those restart on one control plane at a time, each serving again before the
next. What cannot run here is systemd: a restart is SIGTERM and a new process, as
`systemctl restart` does it (kube.ControlPlane.restart), not a unit.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import time

import pytest
from cryptography import x509

from vmkube import pki
from vmkube.bootstrap import render
from vmkube.bootstrap.plan import CAS, wanted_certs
from vmkube.bootstrap.services import touched
from vmkube.nodes.files import FileSpec

from tests.fixtures.kube import ControlPlane, get, start_control_plane, wait, wait_node_ready
from tests.kubelocal import THREE, certificates, write_client_files, write_node_files

SHORT = pki.Lifetimes(leaf=dt.timedelta(minutes=15))
ROLL_SECONDS = 300.0


def served(ip: str, port: int, ca: str, client: ssl.SSLContext | None = None) -> x509.Certificate:
    """The certificate a TLS server presents, verified against ``ca``."""
    ctx = client or ssl.create_default_context()
    ctx.load_verify_locations(cadata=ca)
    with socket.create_connection((ip, port), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname=ip) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def rendered(plan, node, certs) -> dict[str, str]:
    """Path -> digest of the files vmkube writes on this control plane."""
    files: list[FileSpec] = render.control_plane_files(plan, node, certs)
    return {f.path: f.digest for f in files}


def etcd_client(cp: ControlPlane) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.load_cert_chain(str(cp.workdir / "apiserver-etcd-client.crt"), str(cp.workdir / "apiserver-etcd-client.key"))
    return ctx


class Poller:
    """Asks the API through haproxy five times a second, each on a new connection."""

    def __init__(self, cp: ControlPlane):
        self.cp, self.answers, self.stop = cp, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        tls = self.cp.tls()
        while not self.stop.is_set():
            self.answers.append(get(f"{self.cp.server}/api/v1/namespaces/default", tls)[0])
            time.sleep(0.2)

    def __enter__(self) -> "Poller":
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop.set()
        self.thread.join()


@pytest.fixture
def short_lived(tmp_path):
    with start_control_plane(tmp_path, THREE, certificates(THREE, SHORT)) as cp:
        yield cp


def test_certificates_issued_to_expire_within_minutes_are_renewed_one_control_plane_at_a_time(
        short_lived: ControlPlane):
    cp, plan = short_lived, THREE
    old = cp.certs
    now = dt.datetime.now(dt.timezone.utc)
    for node in plan.control_planes:
        assert served(node.ip, cp.ports.apiserver, old["cluster-ca"].cert).not_valid_after_utc - now \
            < dt.timedelta(minutes=16)

    due = pki.reissues(old, wanted_certs(plan), CAS)
    assert set(due) == set(wanted_certs(plan)), due  # every leaf, none of the CAs
    new = {**pki.ensure(old, wanted_certs(plan), CAS), "service-account": old["service-account"],
           "encryption": old["encryption"]}
    assert all(new[ca] == old[ca] for ca in CAS)

    restarted: dict[str, list[str]] = {}
    started = time.monotonic()
    with Poller(cp) as poller:
        for node in plan.control_planes:  # one at a time, as RollingRestart runs them
            before, after = rendered(plan, node, old), rendered(plan, node, new)
            changed = sorted(p for p in after if before.get(p) != after[p])
            units = [u for u in render.CONTROL_PLANE_UNITS if touched(u, changed)]
            restarted[node.name] = units
            write_node_files(cp.workdir, plan, node, cp.ports, new)
            for unit in units:
                cp.restart(f"{node.name}/{unit}")
            deadline = time.monotonic() + ROLL_SECONDS
            wait_node_ready(cp, node, deadline)
            anyone = ssl.create_default_context()
            anyone.check_hostname, anyone.verify_mode = False, ssl.CERT_NONE
            for unit, port in (("kube-controller-manager", cp.ports.controller_manager),
                               ("kube-scheduler", cp.ports.scheduler)):
                wait(cp, f"{node.name}/{unit}", "/healthz",
                     lambda port=port: get(f"https://{node.ip}:{port}/healthz", anyone)[0] == 200, deadline)
    rolled = time.monotonic() - started

    assert restarted == {n.name: list(render.CONTROL_PLANE_UNITS) for n in plan.control_planes}, restarted
    # Every API server and etcd member now presents its renewed certificate, under the same CA.
    now = dt.datetime.now(dt.timezone.utc)
    for node in plan.control_planes:
        api = served(node.ip, cp.ports.apiserver, new["cluster-ca"].cert)
        assert api == pem(new["apiserver"]) and api.not_valid_after_utc - now > dt.timedelta(days=729)
        member = served(node.ip, cp.ports.etcd, new["etcd-ca"].cert, etcd_client(cp))
        assert member == pem(new[f"etcd-server-{node.name}"])
    # The API answered throughout, through haproxy, as a worker's kubelet reaches it.
    failed = [a for a in poller.answers if a != 200]
    assert poller.answers and not failed, f"{len(failed)} of {len(poller.answers)} requests failed: {set(failed)}"

    # The renewed client certificates work: the operator's tools, with the renewed super-admin.
    write_client_files(cp.workdir, plan, cp.server, new)
    assert get(f"{cp.server}/readyz", cp.tls())[0] == 200
    assert "kwok-node-1" in cp.kubectl("get", "nodes", "-o", "name")
    # The facts after: nothing due, so the next run renders the same files and restarts nothing.
    assert pki.reissues(new, wanted_certs(plan), CAS) == {}
    again = {**pki.ensure(new, wanted_certs(plan), CAS), "service-account": new["service-account"],
             "encryption": new["encryption"]}
    assert all(rendered(plan, n, again) == rendered(plan, n, new) for n in plan.control_planes)
    print(f"renewed {len(due)} leaf certificates on 3 control planes in {rolled:.0f}s; "
          f"{len(poller.answers)} of {len(poller.answers)} API requests answered during the roll; "
          f"started in {cp.started_seconds:.0f}s")


def pem(pair: pki.CertKey) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pair.cert.encode())
