"""Converging files over SSH (real OpenSSH): only the delta is uploaded, a second
run over a converged node runs zero mutating commands, and the node's digest memo
never hides a change."""

from __future__ import annotations

import hashlib
import os
import time

from vmkube.nodes.files import FileSpec, Files, ensure_files, remote_state
from vmkube.nodes.phases import Node, run_phases
from vmkube.nodes.ssh import Session


def test_only_the_delta_is_uploaded_and_a_second_run_changes_nothing(ssh_lab, tmp_path):
    ssh_lab.start("direct")
    host = ssh_lab.hosts["direct"]
    root = f"/tmp/vmkube-files-{ssh_lab.tag}"
    files = [FileSpec(f"{root}/etc/a.conf", b"a=1\n"), FileSpec(f"{root}/bin/tool", b"#!/bin/sh\n", 0o755),
             FileSpec(f"{root}/pki/key.pem", b"secret", 0o600)]
    memo = f"{root}/memo"  # the lab's hosts share this machine's /var/lib
    session = Session("n-1", host.endpoint(), ssh_lab.user_key.private_openssh)
    try:
        assert ensure_files(session, files, memo) == [f.path for f in files]
        assert session.mutations == 3
        assert remote_state(session, [f.path for f in files], memo) == {f.path: (f.digest, f.mode) for f in files}
        assert oct(os.stat(memo).st_mode & 0o777) == "0o600"

        before = session.mutations
        assert ensure_files(session, files, memo) == []
        assert session.mutations == before  # converged: nothing to do

        files[0] = FileSpec(files[0].path, b"a=2\n")
        files[2] = FileSpec(files[2].path, b"secret", 0o640)
        assert ensure_files(session, files, memo) == [files[0].path, files[2].path]
        assert session.mutations == before + 2

        # Rewritten in place with the same size and its mtime put back: the ctime still tells.
        p = files[0].path
        session.run(["sh", "-c", f"cp -p {p} {p}.keep && printf 'a=3\\n' > {p} && touch -r {p}.keep {p} "
                                 f"&& rm {p}.keep"], sudo=True)
        assert remote_state(session, [p], memo)[p][0] == hashlib.sha256(b"a=3\n").hexdigest()
        # The memo is believed for the file states it names, and only for them: forged
        # digests read back until the file changes.
        time.sleep(3.1)  # files changed in the last seconds are not remembered
        assert remote_state(session, [f.path for f in files], memo) == {f.path: (hashlib.sha256(
            b"a=3\n").hexdigest() if f.path == p else f.digest, f.mode) for f in files}
        session.run(["sh", "-c", f"sed -i 's/\t.*$/\t{'0' * 64}/' {memo}"], sudo=True)
        state = remote_state(session, [f.path for f in files], memo)
        assert [digest for digest, _mode in state.values()] == ["0" * 64] * 3
        session.run(["sh", "-c", f"printf 'a=4\\n' > {p}"], sudo=True)
        assert remote_state(session, [p], memo)[p][0] == hashlib.sha256(b"a=4\n").hexdigest()
        assert remote_state(session, [files[1].path], memo)[files[1].path][0] == "0" * 64  # kept for the others
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
                  on_change=lambda n, changed: restarted.append(n.name) or [], memo=f"{root}/memo")
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
