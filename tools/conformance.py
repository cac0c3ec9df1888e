"""`make conformance [STACK=local] [FOCUS=...]`: the upstream Kubernetes conformance suite of
the cluster's own version, against a stack's cluster, and docs/conformance.md from its results.

The suite is e2e.test built from the pinned k8s.io/kubernetes module (tools/build conformance);
its test images are built offline (tools/build-test-images) and imported on every node over
SSH, under the names the suite asks for. By default it climbs a ladder of focuses, cheapest
first, each rung a run of its own: one quick spec, the Networking Granular Checks, Services
and DNS, Pods, then every [Conformance] spec that is not [Serial], [Slow] or [Disruptive].
`--rungs N` stops after the first N; FOCUS runs just that regular expression.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vmkube.nodes.ssh import Session  # noqa: E402
from vmkube.parallel import fan_out  # noqa: E402
from tools.stackaccess import private_file, pulumi, stack_sessions  # noqa: E402

SKIP = r"\[Serial\]|\[Slow\]|\[Disruptive\]|\[Flaky\]|\[Feature:"
LADDER = [
    ("one quick spec", r"\[sig-node\] Pods should get a host IP \[NodeConformance\] \[Conformance\]"),
    ("Networking Granular Checks", r"\[sig-network\] Networking Granular Checks.*\[Conformance\]"),
    ("Services and DNS", r"\[sig-network\] (Services|DNS) .*\[Conformance\]"),
    ("Pods", r"\[sig-node\] Pods .*\[Conformance\]"),
    ("every parallel-safe conformance spec", r"\[Conformance\]"),
]
IMPORTED = "/var/lib/vmkube/images"  # where a node keeps what it imported, and its sha256
# The images the first rung's spec runs (test/e2e/common/node/pods.go: one pause container).
QUICK_IMAGES = ("registry.k8s.io/pause:3.10.1",)
# The rungs `make test` climbs on the e2e cluster, and the images they run: the Granular Checks
# start agnhost netexec pods and exec curl in them (test/e2e/framework/network/utils.go).
CI_RUNGS = 1
CI_IMAGES = (*QUICK_IMAGES, "registry.k8s.io/e2e-test-images/agnhost:2.56")


@dataclass
class Spec:
    name: str
    status: str  # passed, failed, skipped
    seconds: float
    message: str = ""


@dataclass
class Rung:
    title: str
    focus: str
    seconds: float = 0.0
    specs: list[Spec] = field(default_factory=list)
    output: str = ""  # what e2e.test printed (a failed spec's steps and logs)

    def count(self, status: str) -> int:
        return sum(1 for s in self.specs if s.status == status)


def tool(*args: str) -> str:
    out = subprocess.run([str(ROOT / "tools" / args[0]), *args[1:]], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"vmkube: error: tools/{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def import_images(sessions: list[Session], images_dir: Path, only: tuple[str, ...] = ()) -> None:
    """The suite's images into containerd on every node (``only``: just those references).

    A node keeps the sha256 of each archive it imported beside the image store, so an image
    rebuilt under the same reference (a new busybox, curl added to agnhost) is imported again
    rather than left stale behind its old tag."""
    listing = json.loads((images_dir / "images.json").read_text())
    wanted = {ref: name for ref, name in sorted(listing.items()) if not only or ref in only}
    digests = {ref: hashlib.sha256((images_dir / name).read_bytes()).hexdigest() for ref, name in wanted.items()}

    def one_node(s: Session) -> None:
        with s:
            have = set(s.run("ctr -n k8s.io images ls -q", sudo=True).stdout.split())
            marks = s.run(f"cat {IMPORTED}/conformance-*.sha256 2>/dev/null || true", sudo=True).stdout.split()
            for ref, name in wanted.items():
                if ref in have and f"{digests[ref]}:{ref}" in marks:
                    continue
                print(f"vmkube: {s.node}: importing {ref}", file=sys.stderr)
                path = f"{IMPORTED}/conformance-{name}"
                s.put((images_dir / name).read_bytes(), path, sudo=True)
                s.run(["ctr", "-n", "k8s.io", "images", "import", path], sudo=True, change=True)
                s.run(f"rm -f {path} && echo {digests[ref]}:{ref} > {path}.sha256", sudo=True, change=True)

    by_name = {s.node: s for s in sessions}
    fan_out(list(by_name), lambda node: one_node(by_name[node]), "importing the conformance images")


def parse_junit(path: Path) -> list[Spec]:
    specs = []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "")
        if name.startswith("[SynchronizedBeforeSuite]") or name.startswith("[SynchronizedAfterSuite]") \
                or name.startswith("[ReportAfterSuite]") or name.startswith("[ReportBeforeSuite]"):
            continue
        failure = case.find("failure")
        status = "failed" if failure is not None or case.find("error") is not None else \
            "skipped" if case.find("skipped") is not None else "passed"
        message = (failure.get("message", "") if failure is not None else "")[:300]
        specs.append(Spec(name.removeprefix("[It] "), status, float(case.get("time") or 0), message))
    return specs


def run_rung(e2e: Path, kubeconfig: Path, rung: Rung, timeout: str) -> Rung:
    with tempfile.TemporaryDirectory(prefix="vmkube-conformance-") as report:
        start = time.monotonic()
        proc = subprocess.run([str(e2e), f"--kubeconfig={kubeconfig}", "--provider=skeleton",
                               f"--ginkgo.focus={rung.focus}", f"--ginkgo.skip={SKIP}", f"--ginkgo.timeout={timeout}",
                               "--ginkgo.no-color", f"--report-dir={report}", "--disable-log-dump",
                               "--ginkgo.flake-attempts=1"], capture_output=True, text=True)
        rung.seconds = time.monotonic() - start
        rung.output = proc.stdout + proc.stderr
        reports = sorted(Path(report).glob("junit*.xml"))
        if not reports:
            sys.exit(f"vmkube: error: e2e.test wrote no report (exit {proc.returncode}):\n{proc.stdout[-3000:]}")
        rung.specs = [s for r in reports for s in parse_junit(r) if s.status != "skipped"]
    return rung


def write_report(path: Path, rungs: list[Rung], version: str, shape: str) -> None:
    lines = ["# Kubernetes conformance of a vmkube cluster",
             "",
             f"Kubernetes {version}; the suite is e2e.test of the same version built from the k8s.io/kubernetes "
             f"module (`make conformance`). Cluster: {shape}. Measured on a 2-core machine running the nodes "
             "under QEMU TCG (no KVM).", "",
             "No registry is reachable where this runs, so the suite's images are built offline "
             "(`tools/build-test-images`) under the names it asks for: agnhost from the module's "
             "`test/images/agnhost`, pause from the toolchain, busybox and dig from Debian 12 packages, "
             "httpd and nginx as busybox's httpd at their upstream document roots. Debian's busybox is "
             "1.35, whose `wget -T` crashes; in this version's test/e2e only Services and load-balancer "
             "specs outside [Conformance] call it.", "",
             "| rung | focus | specs | passed | failed | time |", "|---|---|---|---|---|---|"]
    for r in rungs:
        lines.append(f"| {r.title} | `{r.focus}` | {len(r.specs)} | {r.count('passed')} | {r.count('failed')} | "
                     f"{r.seconds / 60:.1f} min |")
    for r in rungs:
        lines += ["", f"## {r.title}", "", "| spec | result | seconds |", "|---|---|---|"]
        lines += [f"| {s.name.replace('|', '/')} | {s.status}{': ' + s.message if s.message else ''} | "
                  f"{s.seconds:.0f} |" for s in sorted(r.specs, key=lambda s: s.name)]
    path.write_text("\n".join(lines) + "\n")


def build() -> tuple[Path, Path]:
    """The suite's directory and its images' directory, built when missing."""
    tool("build", "conformance")
    images = tool("build-test-images")
    return Path(tool("build", "--tool-dir", "conformance")), Path(images)


def climb(e2e: Path, kubeconfig: Path, ladder: list[tuple[str, str]], timeout: str = "6h") -> list[Rung]:
    rungs = []
    for title, focus in ladder:
        print(f"vmkube: conformance: {title} ({focus})", file=sys.stderr)
        rung = run_rung(e2e, kubeconfig, Rung(title, focus), timeout)
        print(f"vmkube: conformance: {title}: {rung.count('passed')} passed, {rung.count('failed')} failed "
              f"in {rung.seconds:.0f}s", file=sys.stderr)
        rungs.append(rung)
    return rungs


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", default="local")
    parser.add_argument("--focus", default="", help="one regular expression instead of the ladder")
    parser.add_argument("--rungs", type=int, default=len(LADDER), help="climb the first N rungs of the ladder")
    parser.add_argument("--timeout", default="6h", help="per rung, as ginkgo takes it")
    parser.add_argument("--report", default=str(ROOT / "docs" / "conformance.md"))
    args = parser.parse_args(argv)

    suite, images = build()
    import_images(stack_sessions(args.stack), images)
    with private_file(pulumi(args.stack, "stack", "output", "kubeconfig", "--show-secrets")) as kubeconfig:
        ladder = [("focus", args.focus)] if args.focus else LADDER[:args.rungs]
        rungs = climb(suite / "e2e.test", kubeconfig, ladder, args.timeout)
    nodes = json.loads(pulumi(args.stack, "stack", "output", "nodes", "--json"))
    shape = ", ".join(f"{n['name']} ({n['role']}, {n['cpus']} vCPU, {n['memoryMb']} MiB)" for n in nodes)
    version = nodes[0].get("kubeletVersion", "") if nodes else ""
    write_report(Path(args.report), rungs, version, f"stack {args.stack}: {shape}")
    print(f"vmkube: wrote {args.report}", file=sys.stderr)
    return 0 if all(r.count("failed") == 0 for r in rungs) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
