"""Converging files over SSH (real OpenSSH): only the delta is uploaded, and a
second run over a converged node runs zero mutating commands."""

from __future__ import annotations

from vmkube.nodes.files import FileSpec, Files, ensure_files, remote_state
from vmkube.nodes.phases import Node, run_phases
from vmkube.nodes.ssh import Session


def test_only_the_delta_is_uploaded_and_a_second_run_changes_nothing(ssh_lab, tmp_path):
    ssh_lab.start("direct")
    host = ssh_lab.hosts["direct"]
    root = f"/tmp/vmkube-files-{ssh_lab.tag}"
    files = [FileSpec(f"{root}/etc/a.conf", b"a=1\n"), FileSpec(f"{root}/bin/tool", b"#!/bin/sh\n", 0o755),
             FileSpec(f"{root}/pki/key.pem", b"secret", 0o600)]
    session = Session("n-1", host.endpoint(), ssh_lab.user_key.private_openssh)
    try:
        assert ensure_files(session, files) == [f.path for f in files]
        assert session.mutations == 3
        assert remote_state(session, [f.path for f in files]) == {f.path: (f.digest, f.mode) for f in files}

        before = session.mutations
        assert ensure_files(session, files) == []
        assert session.mutations == before  # converged: nothing to do

        files[0] = FileSpec(files[0].path, b"a=2\n")
        files[2] = FileSpec(files[2].path, b"secret", 0o640)
        assert ensure_files(session, files) == [files[0].path, files[2].path]
        assert session.mutations == before + 2
    finally:
        session.run(["rm", "-rf", root], sudo=True)
        session.close()


def test_files_phase_runs_its_hook_only_on_change(ssh_lab):
    ssh_lab.start("direct")
    ssh_lab.start("bastion")
    root = f"/tmp/vmkube-phase-{ssh_lab.tag}"
    nodes = [Node(name, "worker", ssh_lab.hosts[name].ip,
                  Session(name, ssh_lab.hosts[name].endpoint(), ssh_lab.user_key.private_openssh))
             for name in ("direct", "bastion")]
    restarted: list[str] = []
    # Each node has its own file: the bastion and direct hosts share this machine's filesystem.
    phase = Files("configure", lambda n: [FileSpec(f"{root}/{n.name}.conf", f"node={n.name}\n".encode())],
                  on_change=lambda n, changed: restarted.append(n.name) or [])
    try:
        run_phases(nodes, [phase])
        assert sorted(restarted) == ["bastion", "direct"]
        run_phases(nodes, [phase])
        assert sorted(restarted) == ["bastion", "direct"]
        assert [n.session.connections for n in nodes] == [1, 1]
    finally:
        nodes[0].session.run(["rm", "-rf", root], sudo=True)
        for n in nodes:
            n.session.close()
