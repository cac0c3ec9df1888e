"""What one bootstrap run wants on the nodes: the plan, the certificates, the
binaries and preloaded images, rendered into each node's files; and, as the run
goes, which paths changed on each node (later phases restart what they feed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from vmkube import pki
from vmkube.config import KUBE_BINARIES
from vmkube.nodes.files import FileSpec
from vmkube.nodes.phases import Node
from vmkube.roles import CONTROL_PLANE

from vmkube.bootstrap import render
from vmkube.bootstrap.addons import AddonConfig, addon_files
from vmkube.bootstrap.plan import Plan

WORKER_BINARIES = ("kubelet", "kube-proxy")


@dataclass
class Desired:
    plan: Plan
    certs: Mapping[str, pki.CertKey]
    binaries: Mapping[str, Path]  # binary name -> local file
    images: Mapping[str, bytes]  # image reference -> docker-archive, preloaded on every node
    addons: AddonConfig | None = None  # None: no add-ons (the tests' partial plans)
    changed: dict[str, list[str]] = field(default_factory=dict)  # node -> paths changed this run
    started: dict[str, set[str]] = field(default_factory=dict)  # node -> units started this run (not to restart)
    _binary_files: dict[str, FileSpec] = field(default_factory=dict)

    def binary(self, name: str) -> FileSpec:
        """Read and hashed once per run, shared by every node."""
        if name not in self._binary_files:
            self._binary_files[name] = FileSpec(f"{render.BIN_DIR}/{name}", self.binaries[name].read_bytes(), 0o755)
        return self._binary_files[name]

    def files_for(self, node: Node) -> list[FileSpec]:
        plan_node = self.plan.node(node.name)
        sandbox = self.addons.images.pause if self.addons else render.DEFAULT_SANDBOX_IMAGE
        files = render.node_files(self.plan, plan_node, self.certs, self.images, sandbox)
        if node.role == CONTROL_PLANE:
            files = render.control_plane_files(self.plan, plan_node, self.certs) + files
        if self.addons and node.name == self.plan.control_planes[0].name:
            # The first control plane applies the add-ons: their manifests live there.
            files += addon_files(self.plan, self.addons, self.certs)
        else:
            files = render.worker_files(self.plan) + files
        names = KUBE_BINARIES if node.role == CONTROL_PLANE else WORKER_BINARIES
        unique = {f.path: f for f in files + [self.binary(b) for b in names]}
        return list(unique.values())
