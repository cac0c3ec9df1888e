"""Re-running after a first `up` that failed: with no PKI in state, the CA, the
service-account key and the Secrets encryption key are read back from the files the
control plane was given (vmkube.bootstrap.adopt), never made anew; anything torn,
mismatched or foreign is left to be replaced."""

from __future__ import annotations

import base64

from vmkube import pki
from vmkube.bootstrap import adopt, render
from vmkube.bootstrap.converge import cluster_pki
from vmkube.contracts import BootstrapState, CertPair
from vmkube.nodes.phases import Node

from tests.unit.test_bootstrap_render import PLAN, certs as full_pki


def written(certs):
    """The control plane's files as render writes them: path -> text."""
    return {f.path: f.content.decode() for f in render.control_plane_files(PLAN, PLAN.nodes[0], certs)}


def test_what_render_writes_is_what_adopt_reads_back():
    certs = full_pki()
    assert adopt.found_keys(written(certs)) == {k: certs[k] for k in ("cluster-ca", "service-account", "encryption")}


def test_torn_mismatched_or_foreign_files_are_not_adopted():
    certs, other = full_pki(), full_pki()
    files = written(certs)
    cases = {
        "ca key of another CA": ({f"{render.PKI_DIR}/ca.key": other["cluster-ca"].key}, "cluster-ca"),
        "half-written ca key": ({f"{render.PKI_DIR}/ca.key": certs["cluster-ca"].key[:60]}, "cluster-ca"),
        "sa.pub of another key": ({f"{render.PKI_DIR}/sa.pub": other["service-account"].cert}, "service-account"),
        "no sa.key": ({f"{render.PKI_DIR}/sa.key": ""}, "service-account"),
        "encryption config not vmkube's": ({adopt.ENCRYPTION: "kind: EncryptionConfiguration\n"}, "encryption"),
        "encryption secret of 16 bytes": ({adopt.ENCRYPTION: render.encryption_config(
            pki.CertKey("vmkube-1", base64.b64encode(b"x" * 16).decode()))}, "encryption"),
        "encryption config torn": ({adopt.ENCRYPTION: files[adopt.ENCRYPTION][:90]}, "encryption"),
    }
    for case, (change, lost) in cases.items():
        found = adopt.found_keys({**files, **change})
        assert lost not in found, case
        assert set(found) == {"cluster-ca", "service-account", "encryption"} - {lost}, case


def test_the_read_script_output_is_parsed_path_by_path():
    out = (f"/a {base64.b64encode(b'one').decode()}\n/b -\n/c not*base64\n/d {base64.b64encode(b'two').decode()}\n")
    assert adopt.parse_files(out) == {"/a": "one", "/d": "two"}
    assert "base64 -w0" in adopt.read_script(adopt.PATHS) and all(p in adopt.read_script(adopt.PATHS)
                                                                   for p in adopt.PATHS)


class NoSession:
    """A node that must not be asked anything: state already holds the PKI."""
    node = "dev-cp-1"

    def run(self, *_args, **_kwargs):
        raise AssertionError("read the node although state holds the PKI")


def test_a_pki_in_state_is_used_without_asking_the_node():
    certs = full_pki()
    previous = BootstrapState(pki={k: CertPair(v.cert, v.key) for k, v in certs.items()})
    again = cluster_pki(previous, Node("dev-cp-1", "control-plane", "192.168.122.10", NoSession()), PLAN)
    assert again == certs
