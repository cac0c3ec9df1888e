"""The cluster PKI: chains verify, names are right, certificates stay stable
across runs and are reissued only when what they certify changes."""

from __future__ import annotations

import base64
import socket
import ssl
import threading

import yaml
from cryptography import x509

from vmkube import pki

CAS = ("cluster-ca", "etcd-ca", "front-proxy-ca")


def wanted(addresses=("192.168.122.10",), nodes=("dev-cp-1",)):
    return {
        "apiserver": ("cluster-ca", pki.apiserver_names("cluster.local", "10.96.0.1", addresses, nodes)),
        "admin": ("cluster-ca", pki.LeafSpec("vmkube-admin", org="system:masters", client=True)),
        "kubelet-dev-cp-1": ("cluster-ca", pki.LeafSpec("system:node:dev-cp-1", org="system:nodes",
                                                        client=True, server=True, dns=("dev-cp-1",),
                                                        ips=tuple(addresses))),
    }


def load(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def test_leaves_chain_to_their_ca_with_the_right_names():
    certs = pki.ensure({}, wanted(), CAS)
    ca, api = load(certs["cluster-ca"].cert), load(certs["apiserver"].cert)
    api.verify_directly_issued_by(ca)
    san = api.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"kubernetes.default.svc.cluster.local", "kubernetes", "dev-cp-1"} <= set(san.get_values_for_type(x509.DNSName))
    assert {str(i) for i in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.96.0.1", "192.168.122.10"}
    admin = load(certs["admin"].cert)
    assert admin.subject.rfc4514_string() == "CN=vmkube-admin,O=system:masters"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert load(certs["etcd-ca"].cert).subject != ca.subject


def test_a_second_run_changes_nothing_and_a_new_address_reissues_only_what_names_it():
    first = pki.ensure({}, wanted(), CAS)
    again = pki.ensure(first, wanted(), CAS)
    assert again == first
    moved = pki.ensure(first, wanted(addresses=("192.168.122.10", "192.168.122.11")), CAS)
    assert moved["cluster-ca"] == first["cluster-ca"]
    assert moved["admin"] == first["admin"]
    assert moved["apiserver"] != first["apiserver"] and moved["kubelet-dev-cp-1"] != first["kubelet-dev-cp-1"]


def test_a_certificate_from_another_ca_is_replaced():
    first = pki.ensure({}, wanted(), CAS)
    foreign = pki.ensure({}, wanted(), CAS)["apiserver"]
    mixed = pki.ensure({**first, "apiserver": foreign}, wanted(), CAS)
    load(mixed["apiserver"].cert).verify_directly_issued_by(load(first["cluster-ca"].cert))


def test_keys_never_show_in_repr():
    certs = pki.ensure({}, wanted(), CAS)
    assert "PRIVATE KEY" not in repr(certs)


def test_a_tls_client_trusting_the_cluster_ca_accepts_the_apiserver(tmp_path):
    certs = pki.ensure({}, wanted(), CAS)
    (tmp_path / "api.pem").write_text(certs["apiserver"].cert)
    (tmp_path / "api.key").write_text(certs["apiserver"].key)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "api.pem", tmp_path / "api.key")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"ok")
    thread = threading.Thread(target=serve)
    thread.start()
    client_ctx = ssl.create_default_context(cadata=certs["cluster-ca"].cert)
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            client_ctx.wrap_socket(raw, server_hostname="kubernetes.default.svc") as tls:
        assert tls.recv(2) == b"ok"
    thread.join()
    listener.close()


def test_kubeconfig_embeds_the_ca_and_client_credentials():
    certs = pki.ensure({}, wanted(), CAS)
    doc = yaml.safe_load(pki.kubeconfig("dev", "https://192.168.122.10:6443", certs["cluster-ca"].cert,
                                        "vmkube-admin", certs["admin"]))
    assert doc["current-context"] == "dev"
    cluster = doc["clusters"][0]["cluster"]
    assert cluster["server"] == "https://192.168.122.10:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]).decode() == certs["cluster-ca"].cert
    user = doc["users"][0]["user"]
    assert base64.b64decode(user["client-key-data"]).decode() == certs["admin"].key


def test_service_account_key_pair_is_a_matching_pair():
    from cryptography.hazmat.primitives import serialization
    pair = pki.service_account_key()
    private = serialization.load_pem_private_key(pair.key.encode(), password=None)
    public = serialization.load_pem_public_key(pair.cert.encode())
    assert private.public_key().public_numbers() == public.public_numbers()
