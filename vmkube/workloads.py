"""The apps under workloads/: one folder each, holding plain Kubernetes manifests.

At preview, every manifest is parsed and checked (YAML, ``apiVersion``,
``kind``, ``metadata.name``, and that the cluster's Kubernetes version serves
that kind), then the stack's overrides are applied. Every problem is reported
at once, naming the file and object, or the config key.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from vmkube.config import WorkloadSpec
from vmkube.errors import VmkubeError, problem_list

MANIFEST_SUFFIXES = (".yaml", ".yml")
SCALABLE = ("Deployment", "StatefulSet", "ReplicaSet")
# Where each workload kind keeps its pod template.
POD_TEMPLATE = {"Deployment": ("spec", "template"), "StatefulSet": ("spec", "template"),
                "DaemonSet": ("spec", "template"), "ReplicaSet": ("spec", "template"),
                "Job": ("spec", "template"), "CronJob": ("spec", "jobTemplate", "spec", "template"),
                "Pod": ()}
_IMAGE = re.compile(r"^(?P<repo>[^@]+?)(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(@(?P<digest>.+))?$")


class ManifestError(VmkubeError):
    """Manifests or overrides that cannot be applied; every problem on its own line."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(problem_list("invalid workloads", self.problems))


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object of an app, and where it was written."""
    app: str
    where: str  # "workloads/hello/deployment.yaml" (with the document number when a file holds several)
    obj: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def title(self) -> str:
        return f"{self.where}: {self.obj.get('apiVersion')} {self.kind} {self.name!r}"


def list_apps(root: Path) -> list[str]:
    """App names: folders of ``root`` that hold at least one manifest."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and any(f.suffix in MANIFEST_SUFFIXES for f in p.iterdir()))


def load_app(root: Path, app: str, problems: list[str]) -> list[Manifest]:
    """The app's objects in file order; what cannot be read goes to ``problems``."""
    out: list[Manifest] = []
    files = sorted(f for f in (root / app).iterdir() if f.suffix in MANIFEST_SUFFIXES and f.is_file())
    for path in files:
        rel = f"{root.name}/{app}/{path.name}"
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problems.append(f"{rel}: not valid YAML{at}: {getattr(exc, 'problem', None) or exc}")
            continue
        for i, doc in enumerate(docs, 1):
            where = f"{rel} (document {i})" if len(docs) > 1 else rel
            missing = _missing_fields(doc)
            if missing:
                problems.append(f"{where}: {missing}")
                continue
            out.append(Manifest(app, where, doc))
    if not files:
        problems.append(f"{root.name}/{app}: holds no manifest (*.yaml)")
    return out


def _missing_fields(doc: Any) -> str:
    if not isinstance(doc, dict):
        return f"not a Kubernetes object (a YAML mapping), got {type(doc).__name__}"
    lacks = [k for k in ("apiVersion", "kind") if not isinstance(doc.get(k), str) or not doc.get(k)]
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta.get("name"):
        lacks.append("metadata.name")
    return f"missing {', '.join(lacks)}" if lacks else ""


def served_kinds(swagger: Path) -> set[tuple[str, str]]:
    """(apiVersion, kind) of every object type a Kubernetes version's API serves, from its OpenAPI spec."""
    spec = json.loads(swagger.read_text())
    out = set()
    for definition in spec.get("definitions", {}).values():
        for gvk in definition.get("x-kubernetes-group-version-kind") or []:
            group, version = gvk.get("group", ""), gvk["version"]
            out.add((f"{group}/{version}" if group else version, gvk["kind"]))
    return out


def check_kinds(manifests: Iterable[Manifest], served: set[tuple[str, str]], version: str,
                problems: list[str]) -> None:
    """Unknown kinds are errors, unless a CustomResourceDefinition of the same apps defines them."""
    manifests = list(manifests)
    custom = {(f"{m.obj['spec'].get('group')}/{v.get('name')}", m.obj["spec"].get("names", {}).get("kind"))
              for m in manifests if m.kind == "CustomResourceDefinition" and isinstance(m.obj.get("spec"), dict)
              for v in m.obj["spec"].get("versions") or [] if isinstance(v, dict)}
    for m in manifests:
        key = (m.obj["apiVersion"], m.kind)
        if key in served or key in custom:
            continue
        same_kind = sorted(api for api, kind in served if kind == m.kind)
        hint = f"; it serves {m.kind} as {', '.join(same_kind)}" if same_kind else ""
        problems.append(f"{m.title}: Kubernetes {version} does not serve {key[0]} {key[1]}{hint}")


def apply_overrides(manifests: list[Manifest], spec: WorkloadSpec, problems: list[str]) -> list[Manifest]:
    """The app's objects with the stack's overrides applied (copies; the files stay as written)."""
    key = f"vmkube:workloads.{spec.app}"
    out = [Manifest(m.app, m.where, copy.deepcopy(dict(m.obj))) for m in manifests]
    if spec.replicas is not None:
        scalable = [m for m in out if m.kind in SCALABLE]
        if not scalable:
            problems.append(f"{key}.replicas: the app has no {', '.join(SCALABLE)} to scale")
        for m in scalable:
            m.obj.setdefault("spec", {})["replicas"] = spec.replicas
    containers = [c for m in out for c in _containers(m)]
    for field, wanted in (("image", spec.image), ("tag", spec.tag), ("resources", spec.resources)):
        if wanted and not containers:
            problems.append(f"{key}.{field}: the app has no containers (no Deployment, StatefulSet, DaemonSet, "
                            "Job, CronJob or Pod)")
    for c in containers:
        if spec.image or spec.tag:
            c["image"] = _retag(str(c.get("image", "")), spec.image, spec.tag)
        for kind, values in spec.resources.items():
            c.setdefault("resources", {}).setdefault(kind, {}).update({k: str(v) for k, v in values.items()})
    if spec.labels:
        for m in out:
            m.obj["metadata"].setdefault("labels", {}).update(spec.labels)
            template = _pod_template(m)
            if template is not None:
                template.setdefault("metadata", {}).setdefault("labels", {}).update(spec.labels)
    return out


def _retag(image: str, repo: str, tag: str) -> str:
    parsed = _IMAGE.match(image)
    old_repo, old_tag = (parsed.group("repo"), parsed.group("tag")) if parsed else (image, None)
    # A colon after the last slash is a tag; before it, a registry port.
    if old_tag is None and ":" in old_repo.rsplit("/", 1)[-1]:
        old_repo, old_tag = old_repo.rsplit(":", 1)
    new_tag = tag or old_tag
    return f"{repo or old_repo}:{new_tag}" if new_tag else (repo or old_repo)


def _pod_template(m: Manifest) -> dict | None:
    path = POD_TEMPLATE.get(m.kind)
    if path is None:
        return None
    node: Any = m.obj
    for step in path:
        node = node.get(step) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _containers(m: Manifest) -> list[dict]:
    template = _pod_template(m)
    spec = (template or {}).get("spec") if template is not None else None
    if not isinstance(spec, dict):
        return []
    return [c for key in ("initContainers", "containers") for c in spec.get(key) or [] if isinstance(c, dict)]


def resolve(root: Path, specs: Iterable[WorkloadSpec], served: set[tuple[str, str]] | None,
            version: str) -> dict[str, list[Manifest]]:
    """App -> its checked objects with overrides applied; ManifestError lists every problem."""
    problems: list[str] = []
    out: dict[str, list[Manifest]] = {}
    seen: dict[tuple[str, str, str], str] = {}
    for spec in specs:
        manifests = load_app(root, spec.app, problems)
        if served is not None:
            check_kinds(manifests, served, version, problems)
        for m in manifests:
            ident = (m.kind, str(m.obj["metadata"].get("namespace") or "default"), m.name)
            if ident in seen:
                problems.append(f"{m.title}: the same object is also defined in {seen[ident]}")
            seen.setdefault(ident, m.where)
        out[spec.app] = apply_overrides(manifests, spec, problems)
    if problems:
        raise ManifestError(problems)
    return out


def node_ports(apps: Mapping[str, list[Manifest]]) -> dict[str, list[int]]:
    """App -> the node ports its Services open: where the app answers from outside the cluster."""
    out: dict[str, list[int]] = {}
    for app, manifests in apps.items():
        ports = [int(p["nodePort"]) for m in manifests if m.kind == "Service"
                 for p in (m.obj.get("spec") or {}).get("ports") or [] if isinstance(p, dict) and p.get("nodePort")]
        if ports:
            out[app] = sorted(ports)
    return out
