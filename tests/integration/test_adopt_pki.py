"""A re-run after a failed first `up`, over real OpenSSH: the keys the control plane
was given are read back through sudo and kept, so the API server can still decrypt
its Secrets and verify its tokens; the leaves the run issues chain to the old CA."""

from __future__ import annotations

from vmkube import pki
from vmkube.bootstrap import adopt, render
from vmkube.bootstrap.plan import CAS, wanted_certs
from vmkube.nodes.files import FileSpec, ensure_files
from vmkube.nodes.ssh import Session

from tests.unit.test_bootstrap_render import PLAN, certs as full_pki


def test_the_keys_on_the_node_are_kept_when_state_has_none(ssh_lab):
    ssh_lab.start("direct")
    root = f"/tmp/vmkube-adopt-{ssh_lab.tag}"  # the node's / (the lab's hosts share this machine's disk)
    certs = full_pki()
    files = [FileSpec(root + f.path, f.content, f.mode) for f in render.control_plane_files(PLAN, PLAN.nodes[0], certs)]
    session = Session("dev-cp-1", ssh_lab.hosts["direct"].endpoint(), ssh_lab.user_key.private_openssh)
    try:
        assert adopt.adopt(session, root) == {}  # a fresh VM: nothing to keep
        ensure_files(session, files, f"{root}/memo")  # what the failed run wrote
        before = session.mutations
        kept = adopt.adopt(session, root)
        assert session.mutations == before  # reading changes nothing
        assert kept == {k: certs[k] for k in ("cluster-ca", "service-account", "encryption")}
        again = pki.ensure(kept, wanted_certs(PLAN), CAS)
        assert again["cluster-ca"] == certs["cluster-ca"]
        assert pki.matches(again["apiserver"], certs["cluster-ca"], wanted_certs(PLAN)["apiserver"][1])
    finally:
        session.run(["rm", "-rf", root], sudo=True)
        session.close()
