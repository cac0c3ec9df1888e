"""Images vmkube builds here and preloads into containerd on every node (no
registry is reachable from the nodes, and a demo must run offline), and the
phase that imports them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vmkube import oci
from vmkube.contracts import BinarySource
from vmkube.nodes.phases import PARALLEL, Command, Node, execute

if TYPE_CHECKING:
    from vmkube.bootstrap.addons import AddonImages
    from vmkube.bootstrap.desired import Desired

HELLO_REPO = "vmkube.local/hello"
HELLO_TAGS = ("1.0", "1.1")  # two, so that a tag change in a stack rolls out for real
TAR_DIR = "/var/lib/vmkube/images"
# The add-ons' binaries where their upstream images hold them (the manifests name these
# paths, so a stack that pulls the upstream images runs the same commands).
ADDON_BINARIES = {"coredns": ("coredns", ["/coredns"]), "metrics-server": ("metrics-server", ["/metrics-server"]),
                  "network-policy": ("bin/netpol", ["/bin/netpol"])}


def tar_path(ref: str) -> str:
    """Where a node keeps the image's archive: one file per image and tag."""
    name = ref.rsplit("/", 1)[-1].replace(":", "-")
    return f"{TAR_DIR}/{name}.tar"


def _single(ref: str, name: str, binary: bytes, entrypoint: list[str], env: list[str] | None = None) -> bytes:
    return oci.image_tar(ref, {name: (binary, 0o755)}, entrypoint, env=env)


def preloaded(source: BinarySource, names: "AddonImages", preload: bool = True) -> dict[str, bytes]:
    """Image reference -> docker-archive, from the toolchain's builds: the pod sandbox and
    the add-ons under their upstream names (when the stack preloads), the demo app when
    the stack runs it. Nothing without a toolchain build to pack."""
    images: dict[str, bytes] = {}
    if preload and source.pause:
        images[names.pause] = _single(names.pause, "pause", (Path(source.pause) / "pause").read_bytes(), ["/pause"])
    for addon, tool_dir in (source.addons.items() if preload else ()):
        binary, entrypoint = ADDON_BINARIES[addon]
        ref = {"coredns": names.coredns, "metrics-server": names.metrics_server,
               "network-policy": names.network_policies}[addon]
        images[ref] = _single(ref, binary, (Path(tool_dir) / Path(binary).name).read_bytes(), entrypoint)
    if source.hello:
        hello = (Path(source.hello) / "hello").read_bytes()
        for tag in HELLO_TAGS:
            ref = f"{HELLO_REPO}:{tag}"
            images[ref] = _single(ref, "hello", hello, ["/hello"], env=["PATH=/", f"HELLO_VERSION={tag}"])
    return images


def parse_listed(out: str) -> set[str]:
    return set(out.split())


@dataclass
class ImportImages:
    """Phase: the preloaded images in containerd; one whose archive changed is imported again."""
    desired: Desired
    title: str = "import preloaded images (pod sandbox, demo app)"
    mode: str = PARALLEL

    def applies(self, node: Node) -> bool:
        return bool(self.desired.images)

    def facts(self, node: Node) -> set[str]:
        return parse_listed(node.session.run("ctr -n k8s.io images ls -q 2>/dev/null || true", sudo=True,
                                             label="listing containerd's images").stdout)

    def decide(self, node: Node, listed: set[str]) -> list[Command]:
        changed = set(self.desired.changed.get(node.name, []))
        wanted = [ref for ref in sorted(self.desired.images) if ref not in listed or tar_path(ref) in changed]
        if not wanted:
            return []
        return [Command(("systemctl", "start", "containerd")),
                *(Command(("ctr", "-n", "k8s.io", "images", "import", tar_path(ref)), why=f"importing {ref}")
                  for ref in wanted)]

    def run(self, node: Node) -> None:
        execute(node, self.decide(node, self.facts(node)))
