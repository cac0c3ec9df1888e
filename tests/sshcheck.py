"""Log in to a test VM over SSH with its host key pinned (RejectPolicy): the
VM is ready when a real login succeeds, not when port 22 opens."""

from __future__ import annotations

import base64
import io
import time

import paramiko


def host_key(public_openssh: str) -> paramiko.PKey:
    kind, data = public_openssh.split()[:2]
    return paramiko.PKey.from_type_string(kind, base64.b64decode(data))


def login(ip: str, user: str, private_openssh: str, host_public: str, timeout: float) -> paramiko.SSHClient:
    """A connected client, or the last error once the deadline passes.

    A wrong host key is raised at once: waiting longer cannot fix it.
    """
    pkey = paramiko.Ed25519Key.from_private_key(io.StringIO(private_openssh))
    deadline = time.monotonic() + timeout
    while True:
        client = paramiko.SSHClient()
        client.get_host_keys().add(ip, host_public.split()[0], host_key(host_public))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(ip, username=user, pkey=pkey, timeout=5, banner_timeout=15, auth_timeout=15,
                           look_for_keys=False, allow_agent=False)
            return client
        except paramiko.BadHostKeyException:
            client.close()
            raise
        except (OSError, paramiko.SSHException):
            client.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def run(client: paramiko.SSHClient, command: str) -> tuple[int, str, str]:
    _stdin, stdout, stderr = client.exec_command(command, timeout=120)
    out, err = stdout.read().decode(), stderr.read().decode()
    return stdout.channel.recv_exit_status(), out, err
