"""The SSH layer against real OpenSSH servers in network namespaces."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import threading
import time

import paramiko
import pytest

from vmkube.nodes.ssh import Endpoint, Session, SshError
from vmkube.sshkeys import generate_ed25519


def session(lab, name="direct", *, key=None, endpoint=None, **kw) -> Session:
    host = lab.hosts[name]
    return Session(f"node-{name}", endpoint or host.endpoint(), key or lab.user_key.private_openssh, **kw)


def test_pinned_host_key_is_accepted_and_commands_run(ssh_lab):
    ssh_lab.start("direct")
    with session(ssh_lab) as s:
        result = s.run(["echo", "it's", "quoted; not run"])
        assert result.ok and result.stdout == "it's quoted; not run\n"
        failed = s.run("echo oops >&2; exit 3", check=False)
        assert (failed.code, failed.stderr) == (3, "oops\n")
        assert s.run("id -u", sudo=True).stdout.strip() == "0"
        assert s.run(["cat"], stdin=b"from stdin").stdout == "from stdin"
        assert s.connections == 1  # every command above shared one connection


def test_both_streams_are_read_whole_and_a_slow_command_times_out(ssh_lab):
    ssh_lab.start("direct")
    with session(ssh_lab) as s:
        # More than paramiko's 2 MiB window on each stream: reading only one would stall the other.
        big = s.run("head -c 3000000 /dev/zero | tr '\\0' o; head -c 3000000 /dev/zero | tr '\\0' e >&2")
        assert (len(big.stdout), set(big.stdout), len(big.stderr), set(big.stderr)) == (3000000, {"o"}, 3000000, {"e"})
        start = time.monotonic()
        with pytest.raises(SshError, match=r"node-direct: timed out after 1s: sleep 30"):
            s.run("sleep 30", timeout=1)
        assert time.monotonic() - start < 10
        assert s.run("true").ok  # the connection survives a timed-out command


def test_each_small_message_leaves_at_once(ssh_lab):
    # Without TCP_NODELAY a short command waited ~40 ms for a delayed ACK.
    ssh_lab.start("direct")
    with session(ssh_lab) as s:
        sock = s._client.get_transport().sock
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_failed_command_names_node_exit_code_and_last_stderr_lines(ssh_lab):
    ssh_lab.start("direct")
    with session(ssh_lab) as s, pytest.raises(SshError) as err:
        s.run("for i in $(seq 1 15); do echo line$i >&2; done; exit 2")
    text = str(err.value)
    assert text.startswith("node-direct: command failed (exit 2): for i in")
    assert "line15" in text and "line6" in text and "line5\n" not in text  # the last 10 lines


def test_wrong_host_key_is_refused_with_what_to_check(ssh_lab):
    ssh_lab.start("direct")
    host = ssh_lab.hosts["direct"]
    impostor = Endpoint(host.ip, 22, "root", generate_ed25519().public_openssh)
    with pytest.raises(SshError) as err:
        session(ssh_lab, endpoint=impostor, connect_timeout=30).connect()
    text = str(err.value)
    assert text.startswith(f"node-direct: host key mismatch at {host.ip}:22 (node): expected SHA256:")
    assert "got SHA256:" in text and "pulumi refresh" in text


def test_wrong_user_key_is_refused(ssh_lab):
    ssh_lab.start("direct")
    other = generate_ed25519().private_openssh
    with pytest.raises(SshError, match=r"node-direct: authentication refused for user 'root' .*vmkube:ssh.privateKey"):
        session(ssh_lab, key=other, connect_timeout=30).connect()


def test_bastion_path_reaches_a_host_the_operator_cannot(ssh_lab):
    ssh_lab.start("bastion")
    ssh_lab.start("private")
    with pytest.raises(SshError, match=r"node-private: (unreachable|timed out): no SSH login at 10\.250\.\d+\.10:22"):
        session(ssh_lab, "private", connect_timeout=3).connect()
    bastion = ssh_lab.hosts["bastion"].endpoint()
    with session(ssh_lab, "private", bastion=bastion) as s:
        assert s.run("ip -4 -o addr show").stdout.count(ssh_lab.hosts["private"].ip) == 1


def test_wrong_bastion_host_key_names_the_bastion_key(ssh_lab):
    ssh_lab.start("bastion")
    ssh_lab.start("private")
    b = ssh_lab.hosts["bastion"]
    bad = Endpoint(b.ip, 22, "root", generate_ed25519().public_openssh)
    with pytest.raises(SshError, match=r"\(bastion\): expected SHA256:.*vmkube:ssh.bastion.hostKey"):
        session(ssh_lab, "private", bastion=bad, connect_timeout=30).connect()


def test_a_server_that_appears_late_is_waited_for(ssh_lab, caplog):
    caplog.set_level("INFO", logger="vmkube.ssh")
    later = threading.Timer(4.0, ssh_lab.start, args=("direct",))
    later.start()
    start = time.monotonic()
    try:
        with session(ssh_lab, connect_timeout=60) as s:
            assert s.run("true").ok
            assert s.connections == 1
    finally:
        later.cancel()
    assert time.monotonic() - start >= 4.0
    assert any(r.message.startswith("node-direct: waiting for SSH") for r in caplog.records)


def test_a_server_that_never_appears_times_out_naming_the_node(ssh_lab):
    start = time.monotonic()
    with pytest.raises(SshError, match=r"node-direct: (unreachable|timed out): no SSH login at .* within 5s"):
        session(ssh_lab, connect_timeout=5).connect()
    assert time.monotonic() - start < 30


def test_upload_lands_with_mode_and_verified_checksum(ssh_lab):
    ssh_lab.start("direct")
    data = bytes(range(256)) * 4096  # 1 MiB, every byte value
    with session(ssh_lab) as s:
        s.put(data, "/tmp/vmkube-test/payload.bin", mode=0o640)
        out = s.run(["sh", "-c", "sha256sum /tmp/vmkube-test/payload.bin; stat -c %a /tmp/vmkube-test/payload.bin; "
                                 "rm -rf /tmp/vmkube-test"]).stdout.split()
    assert out[0] == hashlib.sha256(data).hexdigest()
    assert out[2] == "640"


def test_a_corrupted_upload_is_refused_and_not_installed(ssh_lab, tmp_path):
    # The node's sha256sum reports a different digest: what a corrupting disk or link looks like.
    fake = ssh_lab.hosts["direct"].workdir / "fakebin"
    fake.mkdir()
    (fake / "sha256sum").write_text("#!/bin/sh\necho 0000000000000000000000000000000000000000000000000000000000000000  \"$1\"\n")
    (fake / "sha256sum").chmod(0o755)
    ssh_lab.start("direct", env_path=f"{fake}:/usr/sbin:/usr/bin:/sbin:/bin")
    with session(ssh_lab) as s:
        with pytest.raises(SshError, match=r"node-direct: upload to /tmp/vmkube-never/x corrupted: sha256 0000"):
            s.put(b"payload", "/tmp/vmkube-never/x")
        assert s.run(["test", "-e", "/tmp/vmkube-never/x"], check=False).code == 1
        assert s.run("ls -A ~/.vmkube-upload").stdout == ""  # the refused copy went too


def test_uploads_are_staged_where_only_the_ssh_user_can_read_them_and_cleaned_up(ssh_lab, monkeypatch):
    ssh_lab.start("direct")
    modes: list[str] = []
    send = Session._send

    def spy(self, files, staging):
        staged = send(self, files, staging)  # uploaded, not yet installed: what another user could see now
        modes.append(self.run(["stat", "-c", "%a", staging, staging.rsplit("/", 1)[0]]).stdout.split())
        modes.append(self.run(["stat", "-c", "%a", *[tmp for _d, tmp, _p, _m in staged]]).stdout.split())
        return staged

    monkeypatch.setattr(Session, "_send", spy)
    with session(ssh_lab) as s:
        # What a run killed mid-upload left: the next upload clears it.
        s.run("mkdir -p ~/.vmkube-upload/killed && echo key > ~/.vmkube-upload/killed/0")
        s.put(b"-----BEGIN PRIVATE KEY-----", "/tmp/vmkube-stage-test/ca.key", mode=0o600)
        left = s.run("ls -A ~/.vmkube-upload").stdout
        installed = s.run(["stat", "-c", "%a", "/tmp/vmkube-stage-test/ca.key"]).stdout.strip()
        s.run(["rm", "-rf", "/tmp/vmkube-stage-test"])
    assert modes[0] == ["700", "700"]  # the staging directory and its parent: the SSH user's only
    assert left == "" and installed == "600"


def test_a_stalled_upload_fails_instead_of_hanging(ssh_lab, monkeypatch):
    import vmkube.nodes.ssh as ssh_module
    ssh_lab.start("direct")
    monkeypatch.setattr(ssh_module, "SFTP_TIMEOUT", 2.0)
    with session(ssh_lab) as s:
        real_open = paramiko.SFTPClient.putfo

        def stall(sftp, fl, remotepath, *args, **kwargs):
            # The node stops answering mid-transfer: its SFTP server is frozen.
            s.run("pkill -STOP -f 'root@internal-sftp'", check=False)
            return real_open(sftp, fl, remotepath, *args, **kwargs)

        monkeypatch.setattr(paramiko.SFTPClient, "putfo", stall)
        start = time.monotonic()
        try:
            with pytest.raises(SshError, match=r"node-direct: upload of 1 file\(s\) stalled: no progress for 2s"):
                s.put(b"x" * (4 << 20), "/tmp/vmkube-stall/x")
        finally:
            subprocess.run(["pkill", "-CONT", "-f", "root@internal-sftp"], check=False)
            subprocess.run(["pkill", "-f", "root@internal-sftp"], check=False)
        assert time.monotonic() - start < 30


def test_secrets_never_reach_the_log_or_errors(ssh_lab, caplog):
    caplog.set_level("INFO", logger="vmkube")
    ssh_lab.start("direct")
    token = "s3cr3t-bootstrap-token-1234"
    with session(ssh_lab, secrets=[token]) as s:
        assert s.run(["sh", "-c", f"echo {token} > /dev/null"]).ok
        with pytest.raises(SshError) as err:
            s.run(f"echo using {token} >&2; exit 1")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert token not in logged and token not in str(err.value)
    assert "****" in logged and "****" in str(err.value)
    assert ssh_lab.user_key.private_openssh.splitlines()[1] not in logged


def test_a_download_is_private_from_its_first_byte_and_a_failed_one_leaves_nothing(ssh_lab, tmp_path):
    ssh_lab.start("direct")
    remote = tmp_path / "remote.bin"  # the lab's hosts share this machine's files
    remote.write_bytes(bytes(range(256)) * 4096)
    with session(ssh_lab) as s:
        local = tmp_path / "copy.bin"
        assert s.download(str(remote), local) == 256 * 4096
        assert local.read_bytes() == remote.read_bytes()
        assert local.stat().st_mode & 0o777 == 0o600
        with pytest.raises(SshError, match=r"node-direct: download of .*/missing.bin failed"):
            s.download(str(tmp_path / "missing.bin"), tmp_path / "partial.bin")
        assert not (tmp_path / "partial.bin").exists()
        with pytest.raises(FileExistsError):  # never over a file already there
            s.download(str(remote), local)
