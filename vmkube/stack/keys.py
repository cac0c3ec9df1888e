"""A per-stack SSH key pair, generated once and kept as a Pulumi secret.

The provider class is pickled into state and unpickled by the dynamic
provider process on every later run: keep it in this module, under this name,
holding no state of its own.
"""

from __future__ import annotations

from typing import Any, Optional

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider

from vmkube.sshkeys import generate_ed25519


class SshKeyProvider(ResourceProvider):
    serialize_as_secret_always = False

    def create(self, props: dict[str, Any]) -> CreateResult:
        pair = generate_ed25519(props["comment"])
        outs = {"comment": props["comment"], "public_key": pair.public_openssh,
                "private_key": pair.private_openssh}
        return CreateResult(id_=pair.public_openssh.split()[1][-16:], outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # The comment is a label only; a new key would lock every node out.
        return DiffResult(changes=False)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        # The key lives only in state: there is nothing outside to drift.
        return ReadResult(id_, props)


class SshKey(Resource, module="vmkube", name="SshKey"):
    public_key: pulumi.Output[str]
    private_key: pulumi.Output[str]

    def __init__(self, name: str, comment: str, opts: Optional[pulumi.ResourceOptions] = None):
        secret = pulumi.ResourceOptions(additional_secret_outputs=["private_key"])
        super().__init__(SshKeyProvider(), name,
                         {"comment": comment, "public_key": None, "private_key": None},
                         pulumi.ResourceOptions.merge(opts, secret))
