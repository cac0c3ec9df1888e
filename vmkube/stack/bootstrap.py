"""Kubernetes on the node VMs as one Pulumi resource.

create/update run the bootstrap phases over SSH (facts first, only the delta);
read asks the API server which nodes are Ready, so `up --refresh` repairs a
node that fell out. The provider class is pickled into state: keep it here,
under this name, holding no state of its own. Inputs are read through
vmkube.contracts; in diff any of them may be unknown (a preview), which counts
as a change and is never iterated.
"""

from __future__ import annotations

import logging
import datetime as dt
from typing import Any, Optional

import pulumi
from pulumi.dynamic import (CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, Resource,
                            ResourceProvider, UpdateResult)

from vmkube import pki, upgrade
from vmkube.bootstrap import converge
from vmkube.contracts import UNKNOWN, BootstrapInputs, BootstrapState, PkiPolicy, changed_fields
from vmkube.errors import VmkubeError

from vmkube.stack.progress import show_progress
from vmkube.stack.unknowns import marked

log = logging.getLogger("vmkube.bootstrap")


def needs_run(olds: dict[str, Any], news: dict[str, Any], now: dt.datetime | None = None) -> bool:
    """An input changed (or may have), a node is not Ready as last seen (a refresh), or a
    certificate in state is due for renewal (within the new inputs' window)."""
    old, new = BootstrapInputs.from_props(marked(olds)), BootstrapInputs.from_props(marked(news))
    if changed_fields(old, new, BootstrapInputs.CLUSTER_FIELDS):
        return True
    if new.nodes is UNKNOWN or new.pki_policy is UNKNOWN:
        return True
    state = BootstrapState.from_props(olds)
    if due_certificates(state, new.pki_policy, now):
        return True
    ready = {s.name for s in state.node_status if s.ready}
    return not {n.name for n in new.nodes} <= ready


def due_certificates(state: BootstrapState, policy: PkiPolicy, now: dt.datetime | None = None) -> list[str]:
    due = pki.expiring(state.public_pki(), policy.lifetimes(), now)
    if due:
        show_progress()  # the preview says why the bootstrap runs
        log.info("certificates due for renewal (within %d days of their end%s): %s", policy.renew_before_days,
                 f", or outlasting {policy.leaf_lifetime_seconds} s" if policy.leaf_lifetime_seconds else "",
                 ", ".join(due))
    return due


class BootstrapProvider(ResourceProvider):
    serialize_as_secret_always = False

    def create(self, props: dict[str, Any]) -> CreateResult:
        show_progress()
        inputs = BootstrapInputs.from_props(props).known()
        state = converge.converge(inputs)
        return CreateResult(id_=inputs.cluster, outs={**props, **state.to_props()})

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        """Refused at preview, before any node is touched: a version change Kubernetes does
        not support (olds: the inputs the cluster was last converged with; none on create)."""
        running, wanted = (olds or {}).get("version"), news.get("version")
        why = upgrade.refusal(running, wanted) if isinstance(running, str) and isinstance(wanted, str) else None
        return CheckResult(news, [CheckFailure("version", why)] if why else [])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=needs_run(olds, news))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        show_progress()
        inputs = BootstrapInputs.from_props(news).known()
        state = converge.converge(inputs, previous=BootstrapState.from_props(olds),
                                  previous_inputs=BootstrapInputs.from_props(olds))
        return UpdateResult(outs={**news, **state.to_props()})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        show_progress()
        try:
            status = [s.to_props() for s in converge.status(BootstrapInputs.from_props(props))]
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
    pki: pulumi.Output[dict]  # secret: name -> certificate and key

    def __init__(self, name: str, props: dict[str, Any], opts: Optional[pulumi.ResourceOptions] = None):
        outputs = {"kubeconfig": None, "apiServer": None, "podCidrs": None, "pki": None, "nodeStatus": None}
        super().__init__(BootstrapProvider(), name, {**props, **outputs}, pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["kubeconfig", "pki", "ssh"])))
