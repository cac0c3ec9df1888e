"""A TLS context that accepts exactly one server certificate, by fingerprint.

Every connection made from the context checks the peer's certificate against
the pinned SHA-1/SHA-256/SHA-512 fingerprint during its handshake, so a
connection pool never opens an unpinned connection.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import ssl

_ALGORITHMS = {40: "sha1", 64: "sha256", 128: "sha512"}
# What vmkube:vsphere.thumbprint accepts: exactly the fingerprints a connection can check,
# as hex pairs joined by colons (as vCenter shows them) or as plain hex.
THUMBPRINT = re.compile("|".join([*(rf"(?:[0-9A-Fa-f]{{2}}:){{{n // 2 - 1}}}[0-9A-Fa-f]{{2}}" for n in _ALGORITHMS),
                                  *(rf"[0-9A-Fa-f]{{{n}}}" for n in _ALGORITHMS)]))


class ThumbprintMismatch(ssl.SSLError):
    pass


def normalize(thumbprint: str) -> str:
    if not THUMBPRINT.fullmatch(thumbprint):
        raise ValueError("a thumbprint is a SHA-1, SHA-256 or SHA-512 fingerprint")
    return thumbprint.replace(":", "").lower()


def pinned_context(thumbprint: str) -> ssl.SSLContext:
    expected = normalize(thumbprint)
    algorithm = _ALGORITHMS[len(expected)]

    class PinnedSocket(ssl.SSLSocket):
        def do_handshake(self, block: bool = False) -> None:  # type: ignore[override]
            super().do_handshake(block)
            seen = hashlib.new(algorithm, self.getpeercert(binary_form=True) or b"").hexdigest()
            if not hmac.compare_digest(seen, expected):
                self.close()
                raise ThumbprintMismatch(f"certificate thumbprint mismatch: server presented {algorithm} {seen}")

    ctx = ssl.create_default_context()
    # The pin replaces chain and name checks: it names the one certificate to trust.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.sslsocket_class = PinnedSocket
    return ctx
