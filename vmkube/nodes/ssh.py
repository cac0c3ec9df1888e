"""SSH to nodes with paramiko: pinned host keys, an optional bastion, connect
with retry and a deadline, quoted commands, checksum-verified uploads.

Host keys are always pinned (vmkube generated them); an unknown or different
key is refused, never learned. Library errors are translated here, once, into
SshError messages that start with the node name. Secrets handed to a session
are replaced by **** in everything it logs or raises.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import select
import shlex
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import paramiko

from vmkube.config import SSH_CONNECT_TIMEOUT
from vmkube.errors import VmkubeError

log = logging.getLogger("vmkube.ssh")
STDERR_LINES = 10
STAGING = ".vmkube-upload"  # under the SSH user's home; see Session.put_many
SFTP_TIMEOUT = 120.0  # seconds an upload may go without progress
KEEPALIVE_SECONDS = 15  # a node that stops answering is noticed, not waited on for good


class SshError(VmkubeError):
    """An SSH failure on one node, already phrased for the user."""

    def __init__(self, node: str, message: str):
        self.node = node
        super().__init__(f"{node}: {message}")


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    user: str
    host_key: str  # "ssh-ed25519 AAAA…": the one key this host may present


@dataclass(frozen=True)
class Result:
    command: str  # as logged: secrets redacted
    code: int
    stdout: str = field(repr=False)
    stderr: str = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.code == 0


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()):
        # Longest first, so a secret containing another is replaced whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "****")
        return text


def _host_key(openssh: str) -> paramiko.PKey:
    kind, data = openssh.split()[:2]
    return paramiko.PKey.from_type_string(kind, base64.b64decode(data))


def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _private_key(text: str) -> paramiko.PKey:
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise VmkubeError("vmkube:ssh.privateKey: not a private key paramiko can read (ed25519, ECDSA or RSA)")


def quote(command: str | Sequence[str]) -> str:
    return command if isinstance(command, str) else shlex.join(command)


class Session:
    """One connection to one node, reused by every step of a run."""

    def __init__(self, node: str, target: Endpoint, private_key: str, *, bastion: Endpoint | None = None,
                 secrets: Iterable[str] = (), connect_timeout: float = SSH_CONNECT_TIMEOUT):
        self.node = node
        self.target = target
        self.bastion = bastion
        self.redact = Redactor([*secrets, private_key])
        self.connect_timeout = connect_timeout
        self._pkey = _private_key(private_key)
        self._client: paramiko.SSHClient | None = None
        self._jump: paramiko.SSHClient | None = None
        self.connections = 0  # how many times this session had to open a connection
        self.mutations = 0    # commands run with change=True, and uploads: what a converged node must not see

    # -- connecting ------------------------------------------------------------

    def _client_for(self, endpoint: Endpoint) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.get_host_keys().add(self._known_as(endpoint), endpoint.host_key.split()[0],
                                   _host_key(endpoint.host_key))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        return client

    @staticmethod
    def _known_as(endpoint: Endpoint) -> str:
        return endpoint.host if endpoint.port == 22 else f"[{endpoint.host}]:{endpoint.port}"

    def _open(self, endpoint: Endpoint, sock: paramiko.Channel | None) -> paramiko.SSHClient:
        client = self._client_for(endpoint)
        try:
            if sock is None:
                sock = _tcp(endpoint)
            client.connect(endpoint.host, port=endpoint.port, username=endpoint.user, pkey=self._pkey,
                           sock=sock, timeout=10, banner_timeout=20, auth_timeout=20,
                           look_for_keys=False, allow_agent=False)
        except BaseException:
            client.close()
            raise
        return client

    def connect(self) -> "Session":
        """Connects (through the bastion if any), retrying until the deadline.

        A node still booting refuses or drops connections: that is retried.
        A wrong host key or a refused key is final and raised at once.
        """
        if self._client is not None and self._client.get_transport() and self._client.get_transport().is_active():
            return self
        deadline = time.monotonic() + self.connect_timeout
        delay, last = 1.0, "no attempt made"
        while True:
            try:
                self._client = self._connect_once()
                self._client.get_transport().set_keepalive(KEEPALIVE_SECONDS)
                self.connections += 1
                log.info("%s: connected to %s@%s:%d", self.node, self.target.user, self.target.host,
                         self.target.port)
                return self
            except paramiko.BadHostKeyException as exc:
                self.close()
                raise SshError(self.node, self._host_key_message(exc)) from None
            except paramiko.AuthenticationException:
                self.close()
                who = self._failing_hop()
                raise SshError(self.node, f"authentication refused for user {who.user!r} at {who.host}:{who.port} "
                                          "with the stack's SSH key (vmkube:ssh.privateKey / vmkube:ssh.user)") from None
            except SshError:
                self.close()
                raise
            except (OSError, paramiko.SSHException, EOFError) as exc:
                self.close()
                last = self.redact(str(exc) or type(exc).__name__)
            if time.monotonic() + delay > deadline:
                kind = "timed out" if "timed out" in last.lower() else "unreachable"
                where = f"{self.target.host}:{self.target.port}"
                via = f" through bastion {self.bastion.host}:{self.bastion.port}" if self.bastion else ""
                raise SshError(self.node, f"{kind}: no SSH login at {where}{via} within "
                                          f"{self.connect_timeout:.0f}s (last error: {last})")
            log.info("%s: waiting for SSH (%s)", self.node, last)
            time.sleep(delay)
            delay = min(delay * 1.5, 10.0)

    def _connect_once(self) -> paramiko.SSHClient:
        self._hop = self.bastion or self.target
        sock = None
        if self.bastion is not None:
            self._jump = self._open(self.bastion, None)
            self._hop = self.target
            sock = self._jump.get_transport().open_channel(
                "direct-tcpip", (self.target.host, self.target.port), ("127.0.0.1", 0), timeout=10)
        return self._open(self.target, sock)

    def _failing_hop(self) -> Endpoint:
        return getattr(self, "_hop", self.target)

    def _host_key_message(self, exc: paramiko.BadHostKeyException) -> str:
        hop = self._failing_hop()
        role = "bastion" if hop is self.bastion else "node"
        what = ("vmkube:ssh.bastion.hostKey" if role == "bastion"
                else "the VM was re-created outside vmkube, or its address now belongs to another machine; "
                     "run `pulumi refresh` and check the hypervisor")
        return (f"host key mismatch at {hop.host}:{hop.port} ({role}): expected {fingerprint(exc.expected_key)}, "
                f"got {fingerprint(exc.key)}; {what}")

    def close(self) -> None:
        for client in (self._client, self._jump):
            if client is not None:
                client.close()
        self._client = self._jump = None

    def __enter__(self) -> "Session":
        return self.connect()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- commands --------------------------------------------------------------

    def run(self, command: str | Sequence[str], *, sudo: bool = False, check: bool = True,
            timeout: float = 600.0, stdin: bytes | None = None, change: bool = False,
            label: str = "") -> Result:
        """Runs a command; a list is quoted word by word. Logs it (or ``label``) with secrets redacted.

        ``change`` marks a command that alters the node, so runs can count them.
        """
        text = quote(command)
        if change:
            self.mutations += 1
        if sudo:
            text = f"sudo -n -- sh -c {shlex.quote(text)}"
        shown = self.redact(quote(command))
        log.info("%s: %s", self.node, label or f"$ {shown}")
        client = self.connect()._client
        chan = None
        try:
            chan = client.get_transport().open_session(timeout=30)
            chan.settimeout(timeout)
            chan.exec_command(text)
            if stdin is not None:
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err, code = _drain(chan, time.monotonic() + timeout)
        except (socket.timeout, TimeoutError):
            raise SshError(self.node, f"timed out after {timeout:.0f}s: {shown}") from None
        except (paramiko.SSHException, OSError) as exc:
            raise SshError(self.node, f"connection lost while running {shown}: {self.redact(str(exc))}") from None
        finally:
            if chan is not None:
                chan.close()  # also frees the wake-up pipe _drain asked for
        result = Result(shown, code, out.decode(errors="replace"), err.decode(errors="replace"))
        if check and not result.ok:
            tail = "\n".join(self.redact(result.stderr).strip().splitlines()[-STDERR_LINES:])
            raise SshError(self.node, f"command failed (exit {code}): {shown}" + (f"\n{tail}" if tail else ""))
        return result

    def put(self, data: bytes, path: str, *, mode: int = 0o644, sudo: bool = False) -> None:
        """Uploads bytes to path: see put_many."""
        self.put_many([(data, path, mode)], sudo=sudo)

    def put_many(self, files: Sequence[tuple[bytes, str, int]], *, sudo: bool = False) -> None:
        """Uploads (bytes, path, mode) items over one SFTP session, then, in one command,
        checks every sha256 on the node and installs each with its mode. A corrupt copy
        never lands anywhere.

        Files are staged in a fresh directory inside ~/.vmkube-upload, which only the
        SSH user can enter (0700): keys are never readable by another local user on
        the way. The staging directory goes in ``finally``; what a killed run left is
        removed by the next upload. A transfer that makes no progress for
        SFTP_TIMEOUT seconds fails instead of hanging."""
        if not files:
            return
        staging = self.run(f"umask 077 && rm -rf ~/{STAGING} && mkdir ~/{STAGING} && mktemp -d ~/{STAGING}/XXXXXXXX",
                           label="making a private staging directory").stdout.strip()
        stalled = False
        try:
            try:
                staged = self._send(files, staging)
            except SshError:
                stalled = True  # the connection is not to be trusted with the clean-up
                self.close()
                raise
            self.mutations += len(files)
            steps = []
            for digest, tmp, path, mode in staged:
                q_tmp, q_path = shlex.quote(tmp), shlex.quote(path)
                steps.append(f'seen=$(sha256sum {q_tmp} | cut -d" " -f1); if [ "$seen" != {digest} ]; then '
                             f'echo "upload to {path} corrupted: sha256 $seen, expected {digest}" >&2; '
                             f'exit 3; fi; install -m {mode:o} -D {q_tmp} {q_path}')
            result = self.run(" && ".join(f"( {s} )" for s in steps), sudo=sudo, check=False,
                              label=f"checking and installing {len(staged)} uploaded file(s)")
            if not result.ok:
                detail = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.code}"
                raise SshError(self.node, detail)
        finally:
            if stalled:
                log.warning("%s: staging directory %s left behind (private to the SSH user); the next upload "
                            "removes it", self.node, staging)
            else:
                self.run(["rm", "-rf", staging], check=False, timeout=60, label="removing the staging directory")

    def download(self, path: str, local: Path) -> int:
        """Copies a file the SSH user may read into ``local``, made 0600 before a byte
        arrives and never over an existing file; returns its size. A transfer that makes
        no progress for SFTP_TIMEOUT seconds fails instead of hanging, and a failed
        transfer leaves no partial file."""
        client = self.connect()._client
        fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out, client.open_sftp() as sftp:
                sftp.get_channel().settimeout(SFTP_TIMEOUT)
                sftp.getfo(path, out)
            log.info("%s: copied %s to %s", self.node, path, local)
            return local.stat().st_size
        except BaseException as exc:
            local.unlink(missing_ok=True)
            if isinstance(exc, (socket.timeout, TimeoutError)):
                raise SshError(self.node, f"download of {path} stalled: no progress for {SFTP_TIMEOUT:.0f}s") from None
            if isinstance(exc, (paramiko.SSHException, OSError)):
                raise SshError(self.node, f"download of {path} failed: {self.redact(str(exc))}") from None
            raise

    def _send(self, files: Sequence[tuple[bytes, str, int]], staging: str) -> list[tuple[str, str, str, int]]:
        staged = []
        client = self.connect()._client
        try:
            with client.open_sftp() as sftp:
                sftp.get_channel().settimeout(SFTP_TIMEOUT)
                for i, (data, path, mode) in enumerate(files):
                    tmp = f"{staging}/{i}"
                    sftp.putfo(io.BytesIO(data), tmp, confirm=True)
                    staged.append((hashlib.sha256(data).hexdigest(), tmp, path, mode))
        except (socket.timeout, TimeoutError):
            raise SshError(self.node, f"upload of {len(files)} file(s) stalled: no progress for "
                                      f"{SFTP_TIMEOUT:.0f}s") from None
        except (paramiko.SSHException, OSError) as exc:
            raise SshError(self.node, f"upload of {len(files)} file(s) failed: {self.redact(str(exc))}") from None
        return staged


class _QuickAckSocket(socket.socket):
    """Acknowledges every segment at once. sshd writes with Nagle's algorithm
    on, so after its post-login debug message it holds its next packet (the
    answer to our first channel) until we acknowledge: ~40 ms of delayed ACK
    per connection. Linux only; elsewhere a plain socket."""

    def recv(self, size: int, *flags: int) -> bytes:
        self.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)  # not sticky: the kernel resets it
        return super().recv(size, *flags)


def _tcp(endpoint: Endpoint) -> socket.socket:
    sock = socket.create_connection((endpoint.host, endpoint.port), timeout=10)
    # SSH is many small messages that each wait for an answer: with Nagle's
    # algorithm on, each could wait ~40 ms for the peer's delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if hasattr(socket, "TCP_QUICKACK"):
        timeout = sock.gettimeout()
        sock = _QuickAckSocket(fileno=sock.detach())
        sock.settimeout(timeout)
    return sock


def _drain(chan: paramiko.Channel, deadline: float) -> tuple[bytes, bytes, int]:
    """Reads stdout and stderr to the end, then the exit code; sleeps until
    data arrives rather than polling (8 polling threads fight over the GIL)."""
    out, err = bytearray(), bytearray()
    # paramiko keeps this pipe readable while either stream has data, and for good from EOF on.
    wake = chan.fileno()
    while True:
        if chan.recv_ready():
            out += chan.recv(65536)
        elif chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
        elif chan.eof_received or chan.closed:
            break
        elif not select.select([wake], [], [], max(0.0, deadline - time.monotonic()))[0]:
            raise TimeoutError
    # The server sends the exit status after EOF.
    if not chan.status_event.wait(max(0.0, deadline - time.monotonic())):
        raise TimeoutError
    return bytes(out), bytes(err), chan.recv_exit_status()
