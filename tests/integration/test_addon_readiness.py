"""The bootstrap's reads (vmkube.bootstrap.api's curl script) and the add-on wait
(vmkube.bootstrap.addons.not_serving) against a real API server: an object that serves,
one that does not exist, a non-JSON answer, and no answer at all."""

from __future__ import annotations

import subprocess

from tests.fixtures.kube import ControlPlane
from tests.helpers import deployment_manifest
from vmkube.bootstrap import api
from vmkube.bootstrap.addons import not_serving

ROLLOUT_SECONDS = 60


def read(cp: ControlPlane, *paths: str, server: str = "") -> list[api.Answer]:
    client = api.Client(server or cp.server, str(cp.workdir / "ca.crt"), str(cp.workdir / "super-admin.crt"),
                        str(cp.workdir / "super-admin.key"))
    out = subprocess.run(["sh", "-c", api.script(list(paths), client, timeout=10)], capture_output=True,
                         text=True, timeout=60).stdout
    return api.parse(out, len(paths))


def test_reads_and_addon_readiness_against_a_real_api_server(kube_cluster: ControlPlane):
    ns = "fixture-readiness"
    kube_cluster.kubectl("create", "namespace", ns)
    kube_cluster.kubectl("apply", "-n", ns, "-f", "-", input=deployment_manifest("dns", 1))
    kube_cluster.kubectl("rollout", "status", "-n", ns, "deployment/dns",
                         f"--timeout={ROLLOUT_SECONDS}s", timeout=ROLLOUT_SECONDS + 10)

    wanted = [("Deployment", "dns"), ("Deployment", "absent")]
    answers = read(kube_cluster, *(api.object_path(k, n, ns) for k, n in wanted), "/readyz", "/api/v1/nodes")
    dns, absent, readyz, nodes = answers
    assert dns.ok and dns.json()["metadata"]["name"] == "dns"
    assert absent.status == 404 and absent.json() is None
    assert readyz.ok and readyz.body == "ok"
    assert {n["metadata"]["name"] for n in nodes.json()["items"]}  # the fixture's nodes
    assert not_serving(wanted, [a.json() for a in answers[:2]]) == ["absent"]

    # Nothing listens there: every path reads as no answer, none is lost.
    gone = read(kube_cluster, "/readyz", "/api/v1/nodes", server="https://127.0.0.1:1")
    assert [a.status for a in gone] == [0, 0]
    kube_cluster.kubectl("delete", "namespace", ns, "--wait=false")


def test_every_addon_object_has_a_path_the_api_server_serves(kube_cluster: ControlPlane):
    """The add-on phase counts objects by reading their paths (api.path_of): each kind's
    collection must exist on a real API server, so a wrong plural or group cannot read as
    'absent' for ever. Collections only: nothing is created in the shared cluster."""
    from tests.unit.test_addons import CONFIG
    from tests.unit.test_bootstrap_render import PLAN, certs
    from vmkube.bootstrap.addons import manifests
    objects = [o for objs in manifests(PLAN, CONFIG, certs()).values() for o in objs]
    collections = sorted({api.path_of(o).rsplit("/", 1)[0] for o in objects})
    assert len({o["kind"] for o in objects}) >= 10
    answers = read(kube_cluster, *collections)
    assert [(path, a.status) for path, a in zip(collections, answers) if not a.ok] == []
