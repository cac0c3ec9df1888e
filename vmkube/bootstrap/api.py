"""Reads from the API server, by curl on the first control plane, as vmkube's super-admin.

The bootstrap's waits look at the cluster every few seconds for minutes. Each look used
to start kubectl on the control plane: under QEMU TCG that Go binary's start alone cost
one to three seconds of the CPU the starting API server needed (the probes took a third
of a vCPU in a measured e2e run). curl starts in a fraction of that, several reads share
one curl and one SSH command, and there is no API discovery. Writes stay with kubectl.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from typing import Any, Mapping

from vmkube.bootstrap.render import LOCAL_API, PKI_DIR
from vmkube.nodes.phases import Node

# The super-admin's key pair as files (curl reads no kubeconfig): root's only, like
# super-admin.conf that holds the same pair for kubectl.
CLIENT = f"{PKI_DIR}/vmkube-super-admin"
STATUS = "--vmkube-status"
_SPLIT = re.compile(rf"\n{STATUS} (\d{{3}})\n")


@dataclass(frozen=True)
class Client:
    """Where the API server is and the files curl authenticates with."""
    server: str = LOCAL_API
    ca: str = f"{PKI_DIR}/ca.crt"
    cert: str = f"{CLIENT}.crt"
    key: str = f"{CLIENT}.key"


NODE_CLIENT = Client()


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer (refused, timed out)
    body: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Mapping[str, Any] | None:
        """The object answered, or None for an error or a body that is not JSON."""
        if not self.ok:
            return None
        try:
            doc = json.loads(self.body)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None


def script(paths: list[str], at: Client = NODE_CLIENT, timeout: float = 20) -> str:
    """One curl for all the paths; after each answer a line with its HTTP status (000 when
    there was none), so a failed read does not hide the others."""
    urls = " ".join(shlex.quote(at.server + p) for p in paths)
    return (f"curl -sS --max-time {timeout:g} --cacert {at.ca} --cert {at.cert} --key {at.key} "
            f"-w '\\n{STATUS} %{{http_code}}\\n' {urls}")


def parse(out: str, count: int) -> list[Answer]:
    """The answers in ``script``'s output, one per path; missing ones read as no answer."""
    parts = _SPLIT.split(out)
    answers = [Answer(int(parts[i + 1]), parts[i].strip("\n")) for i in range(0, len(parts) - 1, 2)]
    return (answers + [Answer(0, "")] * count)[:count]


def get(node: Node, *paths: str, timeout: float = 20) -> list[Answer]:
    result = node.session.run(script(list(paths), timeout=timeout), sudo=True, check=False,
                              timeout=timeout * len(paths) + 30, label=f"reading {', '.join(paths)}")
    return parse(result.stdout, len(paths))


def _plural(kind: str) -> str:
    """The resource name of a built-in kind (NetworkPolicy -> networkpolicies)."""
    lower = kind.lower()
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + ("es" if lower.endswith("s") else "s")


def path_of(obj: Mapping[str, Any]) -> str:
    """The API path of a manifest's object (built-in kinds, whose plurals are regular)."""
    group_version, meta = obj["apiVersion"], obj["metadata"]
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    scope = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
    return f"{base}{scope}/{_plural(obj['kind'])}/{meta['name']}"


GROUP_VERSIONS = {"Deployment": "apps/v1", "DaemonSet": "apps/v1", "APIService": "apiregistration.k8s.io/v1"}


def object_path(kind: str, name: str, namespace: str = "kube-system") -> str:
    """The API path of one object of the kinds the bootstrap waits for."""
    meta = {"name": name, "namespace": None if kind == "APIService" else namespace}
    return path_of({"apiVersion": GROUP_VERSIONS[kind], "kind": kind, "metadata": meta})
