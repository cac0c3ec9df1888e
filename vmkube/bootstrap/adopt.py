"""The keys a cluster already runs with, read back from its first control plane when
Pulumi state holds no PKI.

A first `up` that fails after the files phase (a node that never turns Ready, an
interrupted run) leaves the nodes with a CA, a service-account key and a Secrets
encryption key, but no outputs in state. Making new ones on the re-run would lock
the API server out of its own data: it could not decrypt the Secrets it had
written, and every service-account token would stop verifying. So the re-run takes
those three from the node, checked pair by pair, and makes only what is missing.
(The etcd and front-proxy CAs keep no key on the nodes; new ones are harmless: every
certificate they sign is reissued in the same run.)
"""

from __future__ import annotations

import base64
import binascii
import logging
import shlex

import yaml

from vmkube import pki
from vmkube.nodes.ssh import Session

from vmkube.bootstrap import render

log = logging.getLogger("vmkube.bootstrap")

P = render.PKI_DIR
PAIRS = {"cluster-ca": (f"{P}/ca.crt", f"{P}/ca.key"), "service-account": (f"{P}/sa.pub", f"{P}/sa.key")}
ENCRYPTION = f"/etc/kubernetes/{render.ENCRYPTION_CONFIG}"
PATHS = tuple(p for pair in PAIRS.values() for p in pair) + (ENCRYPTION,)
WHAT = {"cluster-ca": "cluster CA", "service-account": "service-account key", "encryption": "Secrets encryption key"}


def read_script(paths: tuple[str, ...]) -> str:
    """One line per path: the path, then its bytes in base64, or '-' when it is not there."""
    return ("for f in " + " ".join(shlex.quote(p) for p in paths) + "; do printf '%s ' \"$f\"; "
            "if [ -f \"$f\" ]; then base64 -w0 \"$f\"; else printf -; fi; echo; done")


def parse_files(out: str) -> dict[str, str]:
    files = {}
    for line in out.splitlines():
        path, _, data = line.partition(" ")
        if data and data != "-":
            try:
                files[path] = base64.b64decode(data, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                continue  # not a file vmkube wrote: leave it to be replaced
    return files


def written_encryption_key(text: str) -> pki.CertKey | None:
    """The key Secrets are written with: the first secretbox key of the config vmkube renders."""
    try:
        doc = yaml.safe_load(text)
        key = doc["resources"][0]["providers"][0]["secretbox"]["keys"][0]
        name, secret = key["name"], key["secret"]
    except (yaml.YAMLError, KeyError, IndexError, TypeError):
        return None
    if not (isinstance(name, str) and isinstance(secret, str)):
        return None
    try:
        if len(base64.b64decode(secret, validate=True)) != 32:
            return None
    except binascii.Error:
        return None
    return pki.CertKey(name, secret)


def found_keys(files: dict[str, str], root: str = "") -> dict[str, pki.CertKey]:
    """What of the PKI the files hold: each pair only when its key belongs to its public half."""
    out = {}
    for name, (public, private) in PAIRS.items():
        cert, key = files.get(root + public), files.get(root + private)
        if cert and key and pki.holds_key(cert, key):
            out[name] = pki.CertKey(cert, key)
    encryption = written_encryption_key(files.get(root + ENCRYPTION, ""))
    if encryption:
        out["encryption"] = encryption
    return out


def adopt(session: Session, root: str = "") -> dict[str, pki.CertKey]:
    """The CA, service-account key and encryption key on the node, as far as they are
    whole. ``root`` prefixes every path (the tests' stand-in for a node's /)."""
    out = session.run(read_script(tuple(root + p for p in PATHS)), sudo=True, label="read the PKI already on the node")
    keys = found_keys(parse_files(out.stdout), root)
    if keys:
        log.warning("%s: state holds no PKI, but the node does (an earlier run failed after writing it): "
                    "keeping its %s", session.node, ", ".join(WHAT[k] for k in keys))
    return keys
