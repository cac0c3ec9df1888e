"""What kubeadm and the CIS Kubernetes benchmark expect of the files and flags vmkube
renders: each rule here fails on the code before the hardening. The same is checked
on a real node by tests/e2e/test_cluster.py (flags of the running processes, file
modes, a Secret read raw from etcd)."""

from __future__ import annotations

import yaml
from cryptography import x509

from tests.unit.test_bootstrap_render import PLAN, by_path, certs
from vmkube.bootstrap import render
from vmkube.bootstrap.access import ADMIN_BINDING, decide_binding, decide_rewrite
from vmkube.bootstrap.plan import ADMIN_GROUP

CP = PLAN.nodes[0]


def flags(args: list[str]) -> dict[str, str]:
    return dict(a.split("=", 1) for a in args[1:] if "=" in a)


def test_the_api_server_verifies_kubelets_encrypts_secrets_audits_and_does_not_profile():
    api = flags(render.apiserver_args(PLAN, CP))
    assert api["--kubelet-certificate-authority"] == "/etc/kubernetes/pki/ca.crt"
    assert api["--encryption-provider-config"] == "/etc/kubernetes/encryption-config.yaml"
    assert api["--audit-policy-file"] == "/etc/kubernetes/audit-policy.yaml"
    assert api["--audit-log-path"] == "/var/log/kubernetes/audit/audit.log"
    assert (api["--audit-log-maxage"], api["--audit-log-maxbackup"], api["--audit-log-maxsize"]) == ("30", "10", "100")
    for args in (render.apiserver_args(PLAN, CP), render.controller_manager_args(PLAN), render.scheduler_args(PLAN)):
        assert flags(args)["--profiling"] == "false", args[0]


def test_secrets_are_encrypted_with_the_clusters_own_key_and_old_plaintext_still_reads():
    c = certs()
    files = by_path(render.control_plane_files(PLAN, CP, c))
    config = yaml.safe_load(files["/etc/kubernetes/encryption-config.yaml"].content)
    providers = config["resources"][0]["providers"]
    assert config["resources"][0]["resources"] == ["secrets"]
    assert providers[0]["secretbox"]["keys"] == [{"name": "vmkube-1", "secret": c["encryption"].key}]
    assert providers[-1] == {"identity": {}}
    assert len(__import__("base64").b64decode(c["encryption"].key)) == 32
    assert files["/etc/kubernetes/encryption-config.yaml"].mode == 0o600


def test_the_audit_policy_records_metadata_never_bodies():
    policy = yaml.safe_load(by_path(render.control_plane_files(PLAN, CP, certs()))[
        "/etc/kubernetes/audit-policy.yaml"].content)
    assert {r["level"] for r in policy["rules"]} <= {"None", "Metadata"}
    assert policy["rules"][-1] == {"level": "Metadata"}


def test_files_are_readable_by_root_only_and_binaries_are_executable():
    c = certs()
    files = [*render.control_plane_files(PLAN, CP, c), *render.node_files(PLAN, CP, c, {}),
             *render.worker_files(PLAN)]
    loose = [f"{f.path} {f.mode:o}" for f in files if f.mode != 0o600]
    assert loose == []  # keys, kubeconfigs, kubelet and proxy configs, unit files, even public certificates
    paths = {f.path for f in files}
    assert {"/var/lib/kubelet/config.yaml", "/etc/systemd/system/kubelet.service",
            "/etc/kubernetes/kube-proxy.conf", "/etc/kubernetes/admin.conf"} <= paths


def test_the_operators_kubeconfig_is_a_revocable_group_and_system_masters_stays_on_the_node():
    c = certs()
    subject = x509.load_pem_x509_certificate(c["admin"].cert.encode()).subject.rfc4514_string()
    assert subject == f"CN=vmkube-admin,O={ADMIN_GROUP}"
    superuser = x509.load_pem_x509_certificate(c["super-admin"].cert.encode()).subject.rfc4514_string()
    assert "O=system:masters" in superuser
    files = by_path(render.control_plane_files(PLAN, CP, c))
    assert c["super-admin"].cert.encode().split(b"\n")[1] not in files["/etc/kubernetes/admin.conf"].content
    assert files["/etc/kubernetes/super-admin.conf"].mode == 0o600
    # The binding that gives the group its rights, created once.
    [create] = decide_binding(exists=False)
    assert f"create clusterrolebinding {ADMIN_BINDING} --clusterrole=cluster-admin --group={ADMIN_GROUP}" in create.argv
    assert decide_binding(exists=True) == []
    both = decide_binding(exists=False, account=False)
    assert "create serviceaccount default --namespace=default" in both[1].argv
    assert decide_binding(exists=True, account=True) == []


def test_secrets_written_before_encryption_are_rewritten_once_per_key():
    steps = decide_rewrite("vmkube-1", marked=False)
    assert "get secrets --all-namespaces -o json" in steps[0].argv and "replace -f -" in steps[0].argv
    assert decide_rewrite("vmkube-1", marked=True) == []
