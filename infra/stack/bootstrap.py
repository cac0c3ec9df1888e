"""Kubernetes on the node VMs as one Pulumi resource.

create/update run the bootstrap phases over SSH (facts first, only the delta);
read asks the API server which nodes are Ready, so `up --refresh` repairs a
node that fell out. The provider class is pickled into state: keep it here,
under this name, holding no state of its own.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

from infra.bootstrap import cluster
from infra.errors import VmkubeError

from .progress import show_progress

log = logging.getLogger("vmkube.bootstrap")
INPUT_KEYS = ("cluster", "version", "podCidr", "serviceCidr", "nodes", "ssh", "binaries", "endpoint")


class BootstrapProvider(ResourceProvider):
    serialize_as_secret_always = False

    def create(self, props: dict[str, Any]) -> CreateResult:
        show_progress()
        return CreateResult(id_=props["cluster"], outs={**props, **cluster.converge(props)})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # A key added by a newer vmkube and left at its default is no change.
        changed = [k for k in INPUT_KEYS if (olds.get(k) or None) != (news.get(k) or None)]
        names = {n["name"] for n in news.get("nodes") or []}
        ready = {n["name"] for n in olds.get("nodeStatus") or [] if n.get("ready")}
        return DiffResult(changes=bool(changed) or not names <= ready)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        show_progress()
        return UpdateResult(outs={**news, **cluster.converge(news, previous=olds)})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        show_progress()
        try:
            status = cluster.status(props)
        except VmkubeError as exc:
            log.warning("cluster status unknown: %s", exc)
            status = []
        return ReadResult(id_, {**props, "nodeStatus": status})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """The nodes go with their VMs; nothing lives outside them."""


class Bootstrap(Resource, module="vmkube", name="Bootstrap"):
    kubeconfig: pulumi.Output[str]
    apiServer: pulumi.Output[str]
    nodeStatus: pulumi.Output[list]

    def __init__(self, name: str, props: dict[str, Any], opts: Optional[pulumi.ResourceOptions] = None):
        outputs = {"kubeconfig": None, "apiServer": None, "podCidrs": None, "pki": None, "nodeStatus": None}
        super().__init__(BootstrapProvider(), name, {**props, **outputs}, pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["kubeconfig", "pki", "ssh"])))
