"""SSH key pairs, made with `cryptography`, in the OpenSSH formats."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


@dataclass(frozen=True)
class KeyPair:
    private_openssh: str  # secret
    public_openssh: str   # "ssh-ed25519 AAAA…"

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public_openssh!r}, private=****)"


def generate_ed25519(comment: str = "") -> KeyPair:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return KeyPair(private, f"{public} {comment}".strip())


def public_from_private(private_openssh: str) -> str:
    """The public half of a PEM or OpenSSH private key, in OpenSSH form."""
    data = private_openssh.encode()
    loader = (serialization.load_ssh_private_key if b"OPENSSH PRIVATE KEY" in data
              else serialization.load_pem_private_key)
    key = loader(data, password=None)
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()
