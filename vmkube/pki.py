"""The cluster's PKI, made with `cryptography`: three CAs, the service-account
key pair, and the certificates each component and node presents.

Everything is deterministic given its inputs except fresh keys: ``ensure``
reuses what it is given (from Pulumi state) and makes only what is missing, no
longer matches (a new node address, a new node) or is within its renewal window
of expiry, so certificates stay stable across runs and never run out on a
cluster that sees an `up` now and then. CAs are kept for good: renewing one
would orphan every certificate and token it signed, so ``ca_warnings`` says
when one nears its end instead. PEM text only; the Pulumi layer keeps it as secrets.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import secrets
from dataclasses import dataclass
from typing import Iterable, Mapping

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_YEARS = 10
LEAF_LIFETIME = dt.timedelta(days=365 * 2)
RENEW_BEFORE_DAYS = 90  # vmkube:pki.renewBeforeDays
# A CA's end is announced this early: replacing one is a project, not a step of `up`.
CA_WARN_AHEAD = dt.timedelta(days=365)


# A leaf that would outlast a new one by more than this was issued under a longer lifetime
# (a day: far more than clocks differ between the machines that run `up`).
OUTLASTS_BY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Lifetimes:
    """How long a leaf certificate lasts, and how long before its end it is renewed.
    Tests issue leaves that last minutes, to watch them being renewed: a shorter
    lifetime also reissues the leaves that would outlast it."""
    renew_before: dt.timedelta = dt.timedelta(days=RENEW_BEFORE_DAYS)
    leaf: dt.timedelta = LEAF_LIFETIME

    def age_reason(self, end: dt.datetime, now: dt.datetime) -> str:
        """Why a leaf ending at ``end`` is due for its age alone ("" when it is not)."""
        if end - now < self.renew_before:
            return f"expires {_stamp(end)}, less than {_span(self.renew_before)} from now"
        if end - now > self.leaf + OUTLASTS_BY:
            return f"ends {_stamp(end)}, later than a new one would ({_span(self.leaf)})"
        return ""


@dataclass(frozen=True)
class CertKey:
    cert: str  # PEM
    key: str   # PEM, secret

    def __repr__(self) -> str:
        return f"CertKey({subject_of(self.cert)}, key=****)"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _name(cn: str, org: str = "") -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def subject_of(cert_pem: str) -> str:
    return x509.load_pem_x509_certificate(cert_pem.encode()).subject.rfc4514_string()


def make_ca(cn: str) -> CertKey:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365 * CA_YEARS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return CertKey(cert.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key))


@dataclass(frozen=True)
class LeafSpec:
    cn: str
    org: str = ""
    client: bool = False
    server: bool = False
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()


def issue(ca: CertKey, spec: LeafSpec, lifetime: dt.timedelta = LEAF_LIFETIME) -> CertKey:
    ca_cert = x509.load_pem_x509_certificate(ca.cert.encode())
    ca_key = serialization.load_pem_private_key(ca.key.encode(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    usages = ([ExtendedKeyUsageOID.CLIENT_AUTH] if spec.client else []) + \
             ([ExtendedKeyUsageOID.SERVER_AUTH] if spec.server else [])
    builder = (x509.CertificateBuilder().subject_name(_name(spec.cn, spec.org)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + lifetime)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=False,
                                            crl_sign=False, content_commitment=False, data_encipherment=False,
                                            key_agreement=False, encipher_only=False, decipher_only=False),
                              critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),
                              critical=False))
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in spec.dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in spec.ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return CertKey(cert.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key))


def reissue_reason(existing: CertKey | None, ca: CertKey, spec: LeafSpec,
                   lifetimes: Lifetimes = Lifetimes(), now: dt.datetime | None = None) -> str:
    """Why the certificate must be issued again ("" when it may stay): missing, not
    issued by this CA for exactly this spec, or due for its age (Lifetimes.age_reason)."""
    if existing is None:
        return "missing"
    cert = x509.load_pem_x509_certificate(existing.cert.encode())
    ca_cert = x509.load_pem_x509_certificate(ca.cert.encode())
    if cert.issuer != ca_cert.subject or cert.subject != _name(spec.cn, spec.org):
        return "issued for another name or by another CA"
    try:
        ca_cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    except Exception:  # noqa: BLE001 - any verification failure means "not ours"
        return "not signed by this CA"
    due = lifetimes.age_reason(cert.not_valid_after_utc, now or _now())
    if due:
        return due
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = set(san.get_values_for_type(x509.DNSName))
        ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    except x509.ExtensionNotFound:
        dns, ips = set(), set()
    return "" if dns == set(spec.dns) and ips == set(spec.ips) else "the names it certifies changed"


def matches(existing: CertKey | None, ca: CertKey, spec: LeafSpec,
            lifetimes: Lifetimes = Lifetimes(), now: dt.datetime | None = None) -> bool:
    """True when the certificate was issued by this CA for exactly this spec and is not due for its age."""
    return not reissue_reason(existing, ca, spec, lifetimes, now)


def _stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _span(delta: dt.timedelta) -> str:
    return f"{delta.days} days" if delta.days else f"{int(delta.total_seconds())} s"


def is_certificate(pem: str) -> bool:
    """Certificates, not the other PKI entries (the service-account key pair, the encryption key)."""
    return "BEGIN CERTIFICATE" in pem


def not_after(cert_pem: str) -> dt.datetime:
    return x509.load_pem_x509_certificate(cert_pem.encode()).not_valid_after_utc


def is_ca(cert_pem: str) -> bool:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def expiries(certs: Mapping[str, str]) -> dict[str, str]:
    """Certificate name -> its end (UTC, ISO 8601): what `make certs` and the stack output
    list. Only public dates: the input maps names to certificate PEM, never keys."""
    return {name: _stamp(not_after(pem)) for name, pem in sorted(certs.items()) if is_certificate(pem)}


def expiring(certs: Mapping[str, str], lifetimes: Lifetimes = Lifetimes(),
             now: dt.datetime | None = None) -> list[str]:
    """The leaf certificates (names -> PEM) an `up` now would renew for their age alone."""
    now = now or _now()
    return sorted(name for name, pem in certs.items()
                  if is_certificate(pem) and not is_ca(pem) and lifetimes.age_reason(not_after(pem), now))


def ca_warnings(certs: Mapping[str, str], ahead: dt.timedelta = CA_WARN_AHEAD,
                now: dt.datetime | None = None) -> list[str]:
    """A line for each CA (names -> PEM) that ends within ``ahead``; vmkube never replaces a CA by itself."""
    now = now or _now()
    out = []
    for name, pem in sorted(certs.items()):
        if is_certificate(pem) and is_ca(pem) and not_after(pem) - now < ahead:
            end = not_after(pem)
            state = "expired" if end <= now else "expires"
            out.append(f"the cluster's CA {name} ({subject_of(pem)}) {state} {_stamp(end)}: vmkube renews the "
                       "certificates it signs, never the CA itself; plan a CA rotation before then, or every "
                       "certificate it signed stops verifying")
    return out


def holds_key(public_pem: str, key_pem: str) -> bool:
    """True when ``key_pem`` is the private key of ``public_pem`` (a certificate or a bare
    public key); False for anything that does not parse, such as a half-written file."""
    try:
        if "CERTIFICATE" in public_pem:
            public = x509.load_pem_x509_certificate(public_pem.encode()).public_key()
        else:
            public = serialization.load_pem_public_key(public_pem.encode())
        private = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError):
        return False
    form = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return public.public_bytes(*form) == private.public_key().public_bytes(*form)


def service_account_key() -> CertKey:
    """The key pair kube-apiserver signs and verifies service-account tokens with (no certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return CertKey(public, _key_pem(key))


def encryption_key(name: str = "vmkube-1") -> CertKey:
    """A key for Secrets at rest (secretbox: 32 random bytes, base64), named as the
    EncryptionConfiguration names it; kept in state with the PKI as a secret."""
    return CertKey(name, base64.b64encode(secrets.token_bytes(32)).decode())


def apiserver_names(cluster_domain: str, service_ip: str, api_addresses: Iterable[str],
                    node_names: Iterable[str]) -> LeafSpec:
    dns = ["kubernetes", "kubernetes.default", "kubernetes.default.svc",
           f"kubernetes.default.svc.{cluster_domain}", "localhost", *node_names]
    ips = ["127.0.0.1", service_ip, *api_addresses]
    return LeafSpec("kube-apiserver", server=True, dns=tuple(sorted(set(dns))), ips=tuple(sorted(set(ips))))


def reissues(existing: Mapping[str, CertKey], wanted: Mapping[str, tuple[str, LeafSpec]],
             cas: Iterable[str], lifetimes: Lifetimes = Lifetimes(),
             now: dt.datetime | None = None) -> dict[str, str]:
    """The leaves ``ensure`` would issue, each with why; none when every CA is missing
    (a new cluster: everything is new)."""
    present = {name: existing[name] for name in cas if name in existing}
    return {name: why for name, (ca_name, spec) in wanted.items()
            if ca_name in present and (why := reissue_reason(existing.get(name), present[ca_name], spec,
                                                             lifetimes, now))}


def ensure(existing: Mapping[str, CertKey], wanted: Mapping[str, tuple[str, LeafSpec]],
           cas: Iterable[str], lifetimes: Lifetimes = Lifetimes(), now: dt.datetime | None = None) -> dict[str, CertKey]:
    """The full set: CAs first (kept forever once made), then every wanted leaf,
    reissued only when missing, no longer matching, or due for its age (within
    ``lifetimes.renew_before`` of its end, or outlasting ``lifetimes.leaf``). ``wanted`` maps a name to (issuing CA name, spec)."""
    out: dict[str, CertKey] = {}
    for name in cas:
        out[name] = existing.get(name) or make_ca(f"vmkube-{name}")
    for name, (ca_name, spec) in wanted.items():
        current = existing.get(name)
        keep = matches(current, out[ca_name], spec, lifetimes, now)
        out[name] = current if keep else issue(out[ca_name], spec, lifetimes.leaf)
    return out


def kubeconfig(cluster: str, server: str, ca_cert: str, user: str, client: CertKey) -> str:
    """A kubeconfig with the credentials embedded (base64), as kubectl writes them."""
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": cluster,
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": b64(ca_cert)}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(client.cert),
                                          "client-key-data": b64(client.key)}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
    }
    return yaml.safe_dump(doc, sort_keys=False)
