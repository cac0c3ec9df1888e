"""vmkube benchmarks: prints Markdown tables and writes them to bench/latest.md,
one section each; a section not run keeps its earlier table there.

Ratios are measured inside one run (the machines are noisy); medians where a
measurement repeats. Cold toolchain builds take minutes: their times are the
ones recorded when the cache was filled, unless BENCH_COLD=1 rebuilds into
empty caches now. BENCH_ONLY=toolchain,preview,vcsim,scale,ssh,workloads,ha,libvirt,cluster picks sections;
addons (a stack that is up) and conformance (docs/conformance.md's rungs) run only when named.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vmkube import config  # noqa: E402
from vmkube.sshkeys import generate_ed25519  # noqa: E402
from vmkube.vms.libvirt_xml import TCG_TB_CACHE_MIB  # noqa: E402
from vmkube.workloads import list_apps  # noqa: E402
from tests import sshcheck, workspace  # noqa: E402
from tests.fixtures import vcsim  # noqa: E402
from tests.fixtures.libvirt import translation_flushes  # noqa: E402
from tests.fixtures.vcsim import PASSWORD, TEMPLATE, USER, GuestAgent  # noqa: E402
from tests.helpers import example_raw  # noqa: E402
from tests.tls import make_ca_and_server_cert  # noqa: E402
from tools.stackaccess import private_file  # noqa: E402

TOOLS = ("pulumi", "pulumi-language-python", "vcsim", "actionlint")
QUIET = {"on_output": lambda _line: None}
Row = tuple[str, str, str]


def timed(fn: Callable[[], object], repeat: int = 3) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc.stdout


def tool_dir(tool: str) -> Path:
    return Path(run([str(ROOT / "tools" / "build"), "--tool-dir", tool]).strip())


def bin_dir() -> str:
    return run([str(ROOT / "tools" / "build")]).strip().splitlines()[-1]


def toolchain_rows() -> list[Row]:
    rows = []
    if os.environ.get("BENCH_COLD") == "1":
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "VMKUBE_CACHE": f"{tmp}/cache", "GOCACHE": f"{tmp}/gocache",
                   "GOMODCACHE": f"{tmp}/gomod"}
            start = time.perf_counter()
            run([str(ROOT / "tools" / "build")], env=env)
            rows.append(("toolchain cold build, all tools (measured now, empty Go caches)",
                         f"{time.perf_counter() - start:.0f} s", "BENCH_COLD=1"))
            run(["chmod", "-R", "u+w", tmp])
    for tool in TOOLS:
        recorded = tool_dir(tool) / ".build-seconds"
        value = f"{recorded.read_text().strip()} s" if recorded.exists() else "not built"
        rows.append((f"{tool} build, as recorded when its cache entry was made", value,
                     "Go caches as they were then"))
    warm = timed(lambda: run([str(ROOT / "tools" / "build")]), repeat=3)
    rows.append(("toolchain warm run (`tools/build`, everything cached)", f"{warm:.2f} s", "median of 3"))
    return rows


class Workspace:
    """A project copy with its own backend, the built CLI first on PATH."""

    def __init__(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        base = Path(self.tmp.name)
        self.project = workspace.copy_project(base / "project")
        self.env = workspace.engine_env(base, self.project)
        os.environ["PATH"] = os.pathsep.join([bin_dir(), str(ROOT / ".venv" / "bin"), os.environ["PATH"]])

    def stack(self, name: str, **kw):
        return workspace.create_stack(self.project, self.env, name, **kw)

    def close(self) -> None:
        self.tmp.cleanup()


def preview_rows() -> list[Row]:
    ws = Workspace()
    try:
        stack = ws.stack("local", from_example="local")
        preview = timed(lambda: stack.preview(**QUIET))
        version = timed(lambda: run(["pulumi", "version"]))
    finally:
        ws.close()
    raw = example_raw("prod")
    apps = list_apps(ROOT / "workloads")
    load = timed(lambda: config.load(raw, stack="prod", secret_keys={"vsphere"}, apps=apps), repeat=50)
    return [
        ("`pulumi preview`, local stack", f"{preview:.2f} s", "median of 3"),
        ("`pulumi version` (CLI start-up alone)", f"{version:.3f} s", "median of 3"),
        ("config load + validation, prod stack", f"{load * 1000:.2f} ms", "median of 50"),
    ]


@contextlib.contextmanager
def vcsim_workspace():
    """A running vcsim with its template and guest agent, and a workspace: (sim, ca, ws)."""
    with tempfile.TemporaryDirectory() as tmp:
        ca = make_ca_and_server_cert(Path(tmp) / "tls", "127.0.0.1")
        sim = vcsim.start(ca)
        agent = GuestAgent(sim)
        ws = Workspace()
        try:
            vcsim.make_template(sim)
            agent.thread.start()
            yield sim, ca, ws
        finally:
            agent.stop.set()
            vcsim.stop(sim)
            ws.close()


def vcsim_vms_config(name: str, sim, ca, n: int) -> dict:
    """A stack of N VMs (1 control plane, N - 1 workers) on vcsim, Kubernetes not installed."""
    return {"name": name, "hypervisor": "vsphere",
            "vsphere": {"server": sim.server, "user": USER, "datacenter": "DC0", "cluster": "DC0_C0",
                        "datastore": "LocalDS_0", "network": "VM Network", "template": TEMPLATE,
                        "caFile": str(ca.ca_path)},
            "controlPlane": {"count": 1}, "kubernetes": {"install": False},
            "workerPools": [{"name": "w", "count": n - 1}] if n > 1 else []}


def vcsim_rows() -> list[Row]:
    """`pulumi up` of N VMs on vcsim: with a pool resource the VMs are made in parallel."""
    walls: dict[int, float] = {}
    for n in (1, 5, 20):
        with vcsim_workspace() as (sim, ca, ws):
            stack = ws.stack(f"vc{n}", config=vcsim_vms_config("b", sim, ca, n),
                             secrets={"vsphere.password": PASSWORD})
            start = time.perf_counter()
            result = stack.up(**QUIET)
            walls[n] = time.perf_counter() - start
            assert len(result.outputs["nodes"].value) == n
            stack.destroy(**QUIET)
    rows = [(f"vcsim: `pulumi up` of {n} VM{'s' if n > 1 else ''}", f"{w:.1f} s", "one run each")
            for n, w in walls.items()]
    rows.append(("vcsim: wall(20) / wall(1)", f"{walls[20] / walls[1]:.2f}",
                 "goal ≤ 2; one VM per resource would be ≥ 5 (4 provider threads)"))
    return rows


def stopwatch(fn: Callable[[], object]) -> tuple[float, object]:
    """Seconds ``fn`` took, and what it returned."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


SCALE = (1, 10, 50, 100)


def scale_rows() -> list[Row]:
    """A VMs-only stack of N nodes on vcsim, through the real engine: the preview of the new
    stack, its `up`, then with nothing to change an `up --refresh` (as `make up` runs it) and a
    preview; each against N = 1, measured in one run. (The bootstrap's own cost per node is in
    the ssh section: SSH lab hosts, 1 and 8.)"""
    times: dict[int, dict[str, float]] = {}
    with vcsim_workspace() as (sim, ca, ws):
        for n in SCALE:
            stack = ws.stack(f"scale{n}", config=vcsim_vms_config(f"s{n}", sim, ca, n),
                             secrets={"vsphere.password": PASSWORD})
            t = times[n] = {}
            t["preview of the new stack"], _ = stopwatch(lambda: stack.preview(**QUIET))
            t["`up`"], _ = stopwatch(lambda: stack.up(**QUIET))
            t["`up --refresh` with nothing to do"], noop = stopwatch(lambda: stack.up(refresh=True, **QUIET))
            changes = {k: v for k, v in noop.summary.resource_changes.items() if k != "same"}
            assert changes == {}, f"a no-op up of {n} nodes changed {changes}"
            t["preview, converged"], _ = stopwatch(lambda: stack.preview(**QUIET))
            stack.destroy(**QUIET)
    rows = []
    for what in times[1]:
        for n in SCALE:
            rows.append((f"scale: {what}, {n} node{'s' if n > 1 else ''}", f"{times[n][what]:.1f} s",
                         "" if n == 1 else f"× {times[n][what] / times[1][what]:.2f} of 1 node"))
    return rows


def qemu_rss_mib(names: list[str]) -> dict[str, float]:
    out = run(["ps", "-eo", "rss=,args="])
    rss = {}
    for line in out.splitlines():
        size, _, args = line.strip().partition(" ")
        for name in names:
            if "qemu-system" in args and f"guest={name}," in args:
                rss[name] = int(size) / 1024
    return rss


def libvirt_rows() -> list[Row]:
    """Local stack shape on real QEMU (TCG): `up` until every node takes an SSH login."""
    rows: list[Row] = []
    key = generate_ed25519("bench")
    for n in (1, 3):
        ws = Workspace()
        prefix = f"bench{n}"
        cfg = {"name": prefix, "hypervisor": "libvirt", "kubernetes": {"install": False},
               "controlPlane": {"count": 1, "cpus": 1, "memoryMb": 1536, "diskGb": 6},
               "workerPools": [{"name": "w", "count": n - 1, "cpus": 1, "memoryMb": 1024, "diskGb": 6}] if n > 1 else []}
        stack = ws.stack(f"lv{n}", config=cfg, secrets={"ssh.privateKey": key.private_openssh})
        try:
            start = time.perf_counter()
            result = stack.up(**QUIET)
            up_done = time.perf_counter() - start
            nodes = result.outputs["nodes"].value
            host_keys = result.outputs["hostKeys"].value

            def ready(node: dict) -> None:
                sshcheck.login(node["ip"], "vmkube", key.private_openssh, host_keys[node["name"]], 600).close()
            threads = [threading.Thread(target=ready, args=(node,)) for node in nodes]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            ssh_ready = time.perf_counter() - start
            rss = qemu_rss_mib([node["name"] for node in nodes])
        finally:
            stack.destroy(**QUIET)
            ws.close()
        rows.append((f"libvirt: `pulumi up` of {n} VM{'s' if n > 1 else ''} (IPs known)", f"{up_done:.0f} s",
                     "QEMU TCG"))
        rows.append((f"libvirt: `pulumi up` start to SSH login on all {n}", f"{ssh_ready:.0f} s",
                     "pinned host keys"))
        rows.append((f"libvirt: QEMU resident memory per VM ({n} VM{'s' if n > 1 else ''})",
                     f"{statistics.mean(rss.values()):.0f} MiB" if rss else "n/a",
                     f"guest RAM 1024–1536 MiB; TCG cache capped at {TCG_TB_CACHE_MIB} MiB"))
    return rows


def lab_cpu(pids: list[int]) -> float:
    """CPU seconds of these sshd listeners and of all they have reaped: the
    per-connection sshd, the login shell and every command it ran."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")


def wait_reaped(pids: list[int]) -> None:
    """A closed connection's processes count in lab_cpu only once sshd has reaped them."""
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}/task/{pid}/children").read_text().strip() for pid in pids):
        if time.monotonic() > deadline:
            raise SystemExit("bench: sshd children still running 10 s after their sessions closed")
        time.sleep(0.01)


def ssh_rows() -> list[Row]:
    """Phases over N SSH hosts (OpenSSH in network namespaces): connect, read facts, preflight.

    The lab's hosts run on this machine's cores, so beside the wall times this
    reports the CPU each host costs, split into vmkube's side and the lab's
    (sshd and the commands: on a real node, that node's own CPU), and the
    wall(8) / wall(1) that this much CPU allows at best on these cores.
    """
    from vmkube.nodes.phases import Node, run_phases
    from vmkube.bootstrap.preflight import Preflight
    from vmkube.nodes.ssh import Session
    from tests.fixtures.sshd import open_lab

    cores = os.cpu_count() or 1
    walls: dict[int, float] = {}
    client: dict[int, float] = {}  # CPU seconds per host and run
    lab_side: dict[int, float] = {}
    per_node: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp, open_lab(Path(tmp), extra_hosts=8) as lab:
        names = [f"d{i}" for i in range(1, 9)]
        for name in names:
            lab.start(name)
        pids = [lab.hosts[name].proc.pid for name in names]  # sshd itself: the lab execs into it
        for n in (1, 8):
            samples: list[tuple[float, float, float]] = []
            for _ in range(5):
                nodes = [Node(name, "worker", lab.hosts[name].ip,
                              Session(name, lab.hosts[name].endpoint(), lab.user_key.private_openssh))
                         for name in names[:n]]
                wait_reaped(pids)
                cpu_before, lab_before = time.process_time(), lab_cpu(pids)
                start = time.perf_counter()
                try:
                    # Two phases sharing each node's session, as bootstrap phases do.
                    for _phase in range(2):
                        try:
                            run_phases(nodes, [Preflight(memory_mb={})])
                        except Exception:  # noqa: BLE001 - this kernel may lack modules: failures are fine here
                            pass
                    wall = time.perf_counter() - start
                    per_node[n] = sum(node.session.connections for node in nodes) / n
                finally:
                    for node in nodes:
                        node.session.close()
                wait_reaped(pids)
                samples.append((wall, (time.process_time() - cpu_before) / n, (lab_cpu(pids) - lab_before) / n))
            walls[n], client[n], lab_side[n] = (statistics.median(x) for x in zip(*samples))
    # Neither below one host's time, nor below the CPU all 8 need spread over
    # every core, nor below vmkube's own CPU (one interpreter: one core).
    floor = max(walls[1], 8 * (client[8] + lab_side[8]) / cores, 8 * client[8]) / walls[1]
    return [
        ("ssh: 2 phases over 1 host (connect, facts, preflight)", f"{walls[1]:.2f} s", "median of 5"),
        ("ssh: 2 phases over 8 hosts", f"{walls[8]:.2f} s", "median of 5"),
        ("ssh: wall(8) / wall(1)", f"{walls[8] / walls[1]:.2f}", "goal ≤ 1.5; here it cannot go below the best two rows down"),
        ("ssh: CPU per host and run, vmkube (1 host / 8 hosts)", f"{client[1] * 1000:.0f} / {client[8] * 1000:.0f} ms",
         "paramiko and the phase threads, all threads of this process"),
        ("ssh: CPU per host and run, lab sshd and commands (1 host / 8 hosts)",
         f"{lab_side[1] * 1000:.0f} / {lab_side[8] * 1000:.0f} ms",
         "login, shell, facts script; on a real node its own CPU"),
        (f"ssh: best wall(8) / wall(1) this CPU allows on {cores} cores", f"{floor:.2f}",
         "8 × (vmkube + lab) CPU per host / cores / wall(1): the lab's hosts share these cores"),
        ("ssh: wall(8) over that best", f"{walls[8] / walls[1] / floor:.2f}",
         "what the fan-out adds to the CPU the cores must do; 1.00 adds nothing"),
        ("ssh: connections opened per node per run", f"{per_node[8]:.1f}", "goal 1"),
    ]


def cluster_rows() -> list[Row]:
    """The local stack's shape on real QEMU: `up` until every node is Ready, split into VMs and bootstrap."""
    import re

    ws = Workspace()
    cfg = {"name": "benchk", "hypervisor": "libvirt",
           "controlPlane": {"count": 1, "cpus": 2, "memoryMb": 2048, "diskGb": 8},
           "workerPools": [{"name": "w", "count": 1, "cpus": 1, "memoryMb": 1536, "diskGb": 8}]}
    stack = ws.stack("cluster", config=cfg)
    lines: list[str] = []
    try:
        start = time.perf_counter()
        result = stack.up(on_output=lines.append)
        total = time.perf_counter() - start
        assert all(n["ready"] for n in result.outputs["nodes"].value)
        domains = [n["name"] for n in result.outputs["nodes"].value]
        memory = qemu_rss_mib(domains)
        flushes = {d: translation_flushes("qemu:///system", d) for d in domains}
        with private_file(result.outputs["kubeconfig"].value) as kubeconfig:
            addons = addon_rows(kubeconfig)
        again_lines: list[str] = []
        start = time.perf_counter()
        stack.up(on_output=again_lines.append)
        second = time.perf_counter() - start
    finally:
        stack.destroy(**QUIET)
        ws.close()
    text = "\n".join(lines)

    def seconds(kind: str) -> float:
        found = [float(m) for m in re.findall(rf"vmkube:{kind} \S+ created \((\d+(?:\.\d+)?)s\)", text)]
        return max(found) if found else float("nan")
    return [
        ("cluster: `pulumi up` of the local stack to all nodes Ready", f"{total:.0f} s", "1 control plane + 1 worker, TCG"),
        ("cluster: of which node VMs (boot to IP)", f"{seconds('VmPool'):.0f} s", "slowest pool"),
        ("cluster: of which bootstrap (SSH to Ready)", f"{seconds('Bootstrap'):.0f} s", "binaries, PKI, services"),
        ("cluster: second `pulumi up` (nothing to do)", f"{second:.1f} s", "0 changes"),
        *[(f"cluster: QEMU resident memory of {d}", f"{memory.get(d, float('nan')):.0f} MiB",
           f"after the up; TCG cache capped at {TCG_TB_CACHE_MIB} MiB") for d in domains],
        *[(f"cluster: translation-cache flushes in {d}", flushes[d], "QEMU `info jit`, boot to Ready")
          for d in domains],
        *addons,
    ]


def stack_addon_rows() -> list[Row]:
    """The add-ons of a stack that is up already (BENCH_ADDONS_STACK, default local): the
    figures of its last bootstrap, without building a cluster for them."""
    from tools.stackaccess import pulumi

    stack = os.environ.get("BENCH_ADDONS_STACK", "local")
    with private_file(pulumi(stack, "stack", "output", "kubeconfig", "--show-secrets")) as kubeconfig:
        return [(f"{name} (stack {stack})", value, note) for name, value, note in addon_rows(kubeconfig)]


def conformance_rows() -> list[Row]:
    """Each rung's time as `make conformance` recorded it (BENCH_CONFORMANCE_REPORT, default
    docs/conformance.md): a rung takes from a minute to hours under TCG, too long to rerun here."""
    path = Path(os.environ.get("BENCH_CONFORMANCE_REPORT", ROOT / "docs" / "conformance.md"))
    if not path.is_file():
        raise SystemExit(f"bench: {path}: missing (make conformance writes it)")
    rows: list[Row] = []
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[5].endswith(" min") and cells[2].isdigit():
            rows.append((f"conformance rung: {cells[0]}", cells[5],
                         f"{cells[2]} specs, {cells[3]} passed, {cells[4]} failed"))
    if not rows:
        raise SystemExit(f"bench: {path}: no rung table")
    return rows


# Add-on -> its workload, and the APIService that must be Available before it serves (`kubectl
# top` needs metrics-server's).
ADDON_WORKLOADS = (("CoreDNS", "deployment", "coredns", ""),
                   ("metrics-server", "deployment", "metrics-server", "v1beta1.metrics.k8s.io"),
                   ("kube-network-policies", "daemonset", "kube-network-policies", ""))


def addon_rows(kubeconfig: Path) -> list[Row]:
    """Each add-on from its workload's creation to its last pod Ready (and its APIService
    Available), by the API server's own timestamps: no polling of this script's is in the figure."""
    import datetime
    import json

    kubectl = str(tool_dir("kubernetes") / "kubectl")

    def get(*args: str) -> dict | None:
        out = run([kubectl, "--kubeconfig", str(kubeconfig), "-n", "kube-system", "get", *args,
                   "--ignore-not-found", "-o", "json"]).strip()
        return json.loads(out) if out else None

    def since(conditions: list[dict], kind: str) -> list[str]:
        return [c["lastTransitionTime"] for c in conditions if c["type"] == kind and c["status"] == "True"]

    def when(stamp: str) -> datetime.datetime:
        return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))

    rows: list[Row] = []
    for title, kind, name, apiservice in ADDON_WORKLOADS:
        found = get(kind, name)
        if not found:
            rows.append((f"add-on {title}: created to ready", "off", "not enabled in this stack"))
            continue
        selector = ",".join(f"{k}={v}" for k, v in found["spec"]["selector"]["matchLabels"].items())
        pods = (get("pods", "-l", selector) or {}).get("items", [])
        ready = [t for p in pods for t in since(p["status"].get("conditions", []), "Ready")]
        if apiservice:
            ready += since(((get("apiservice", apiservice) or {}).get("status") or {}).get("conditions", []),
                           "Available")
        if not pods or len(ready) < len(pods) + bool(apiservice):
            rows.append((f"add-on {title}: created to ready", "not ready", f"{len(pods)} pods"))
            continue
        took = max(when(t) for t in ready) - when(found["metadata"]["creationTimestamp"])
        rows.append((f"add-on {title}: created to ready", f"{took.total_seconds():.0f} s",
                     f"{len(pods)} pod(s), the API server's timestamps"))
    return rows


APP = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: app, image: "vmkube.local/hello:1.0", ports: [{{containerPort: 8080}}]}}]
"""


def workloads_rows() -> list[Row]:
    """Apps onto a real API server (tests/fixtures/kube.py; kwok plays the nodes), through an apps stack."""
    import pulumi
    from pulumi import automation as auto

    from tests.fixtures.kube import start_control_plane

    rows: list[Row] = []
    ws = Workspace()
    try:
        with start_control_plane(Path(ws.tmp.name) / "kube") as kube:
            rows.append(("workloads: local control plane start (etcd, API server, controllers, kwok)",
                         f"{kube.started_seconds:.1f} s", "test fixture, not part of a run"))
            for i in range(1, 21):
                (ws.project / "workloads" / f"app-{i}").mkdir()
                (ws.project / "workloads" / f"app-{i}" / "deployment.yaml").write_text(APP.format(name=f"app-{i}"))
            kubeconfig = kube.kubeconfig
            cluster = auto.create_stack(
                "cluster", project_name="vmkube",
                program=lambda: pulumi.export("kubeconfig", pulumi.Output.secret(kubeconfig)),
                opts=auto.LocalWorkspaceOptions(env_vars=ws.env, work_dir=str(ws.project)))
            cluster.up(**QUIET)
            ups: dict[int, float] = {}
            for n in (1, 20):
                stack = ws.stack(f"apps{n}", config={"clusterStack": "cluster",
                                                      "workloads": {f"app-{i}": {} for i in range(1, n + 1)}})
                start = time.perf_counter()
                stack.up(**QUIET)
                ups[n] = time.perf_counter() - start
                same = timed(lambda: stack.preview(**QUIET))
                rows.append((f"workloads: `pulumi up` of {n} app{'s' if n > 1 else ''} (Deployments Ready)",
                             f"{ups[n]:.1f} s", "one run"))
                rows.append((f"workloads: `pulumi preview`, {n} app{'s' if n > 1 else ''}, nothing to change",
                             f"{same:.1f} s", "median of 3"))
                stack.destroy(**QUIET)
            rows.append(("workloads: up(20 apps) / up(1 app)", f"{ups[20] / ups[1]:.2f}",
                         "apps deploy in parallel: far below 20"))
    finally:
        ws.close()
    return rows


def ha_rows() -> list[Row]:
    """Three control planes on loopback (tests/fixtures/kube.py) losing the one leading the controllers."""
    import tempfile

    from tests.fixtures.kube import get, start_control_plane
    from tests.kubelocal import THREE
    from vmkube.waiting import wait_for

    CM = "kube-controller-manager"

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="vmkube-bench-ha-") as tmp:
        with start_control_plane(Path(tmp), THREE) as cp:
            rows.append(("ha: three control planes and haproxy start", f"{cp.started_seconds:.1f} s",
                         "test fixture: etcd, API servers, controllers, schedulers, kwok"))
            leader = wait_for("a controller manager leading", lambda: (bool(cp.leader(CM)), cp.leader(CM)),
                              timeout=180, interval=0.5)
            lost = THREE.node(leader)
            cp.kill(lost)
            start = time.monotonic()
            answered = sum(get(f"{cp.server}/api/v1/namespaces/default", cp.tls())[0] == 200 for _ in range(30))
            answers = time.monotonic() - start
            rows.append(("ha: new requests answered right after the loss", f"{answered} of 30",
                         f"in {answers:.1f} s; haproxy retries a refused connection on another server"))
            wait_for("another controller manager leading", lambda: (cp.leader(CM) not in (None, lost.name), None),
                     timeout=180, interval=0.5)
            rows.append(("ha: controller manager leadership moved after", f"{time.monotonic() - start:.0f} s",
                         "bounded by the 60 s lease (--leader-elect-lease-duration)"))
            cp.start(lost)
            back = time.monotonic()
            url = f"https://{lost.ip}:{cp.ports.apiserver}/readyz"
            wait_for(f"{lost.name}'s API server", lambda: (get(url, cp.tls())[0] == 200, None), timeout=180,
                     interval=0.2)
            rows.append(("ha: the lost control plane serves again after restart", f"{time.monotonic() - back:.1f} s",
                         "etcd rejoins with its data, then the API server is ready"))
    return rows




def snapshot_rows() -> list[Row]:
    """etcd snapshot and restore of a keyspace of 1000 values of 10 KiB: vmkube's etcd on a
    host of the SSH lab (tests/fixtures/etcdnode.py), through OpenSSH, checked by etcdutl."""
    import tempfile
    from datetime import datetime, timezone

    from tests.fixtures.etcdnode import etcd_on
    from tests.fixtures.sshd import open_lab
    from vmkube.bootstrap import restore, snapshot

    with tempfile.TemporaryDirectory(prefix="vmkube-bench-snapshot-") as tmp, open_lab(Path(tmp)) as lab, \
            etcd_on(lab, "direct", Path(tmp)) as node:
        put = " ".join(node.etcdctl)
        start = time.monotonic()
        node.session.run(f"v=$(head -c 10240 /dev/zero | tr '\\0' x); for i in $(seq 1000); do "
                         f"{put} put /registry/configmaps/bench/cm-$i \"$v\" >/dev/null || exit 1; done",
                         label="writing 1000 values of 10 KiB")
        fill = time.monotonic() - start
        start = time.monotonic()
        snap = snapshot.take(node.session, Path(tmp) / "snapshots", why="bench", etcdutl=node.etcd / "etcdutl",
                             keep=1, at=node.at, etcdctl=node.etcdctl[0])
        took = time.monotonic() - start
        node.stop()
        stage = Path(tmp) / "stage"
        start = time.monotonic()
        node.session.put_many([((node.etcd / "etcdutl").read_bytes(), f"{stage}/etcdutl", 0o700),
                               (snap.path.read_bytes(), f"{stage}/snapshot.db", 0o600)], sudo=True)
        member = restore.Member("cp-1", "127.0.0.1")
        node.session.run(restore.restore_script(member, [member], datetime.now(timezone.utc).strftime(snapshot.STAMP),
                                                node.at, stage=str(stage)), sudo=True)
        restored = time.monotonic() - start
        start = time.monotonic()
        node.start()
        back = time.monotonic() - start
        count = node.session.run([*node.etcdctl, "get", "--prefix", "--count-only", "--write-out=fields",
                                  "/registry/configmaps/bench/"]).stdout
    keys = next((line.split(":")[1].strip() for line in count.splitlines() if line.startswith('"Count"')), "?")
    return [
        ("snapshot: keyspace", f"{snap.size / 2**20:.1f} MiB", f"{snap.keys} keys, revision {snap.revision}; "
                                                               f"written in {fill:.0f} s"),
        ("snapshot: save, copy over SSH, check", f"{took:.2f} s", "etcdctl snapshot save, SFTP, etcdutl snapshot status"),
        ("snapshot: restore on the node", f"{restored:.2f} s", "upload (snapshot + etcdutl), etcdutl snapshot restore, swap"),
        ("snapshot: etcd serving again after the restore", f"{back:.2f} s", f"{keys} of 1000 values back"),
    ]


def cold_rows(env: str, how: str) -> list[Row]:
    """A cold install as `.ci/run` logged it (the log's path in ``env``): every step and
    every tool it built. CI measures it, not this script: a cold run takes up to an hour."""
    log_path = os.environ.get(env)
    if not log_path:
        raise SystemExit(f"bench: set {env} to the log of a `.ci/run` (bash .ci/run > ci.log 2>&1)")
    text = Path(log_path).read_text(errors="replace")
    how = os.environ.get(f"{env}_HOW", how)  # what the run was, when the log's own story needs telling
    rows: list[Row] = []
    for name, seconds in re.findall(r"^(?:\S+ )?vmkube: built (\S+) in (\d+)s$", text, re.M):
        rows.append((f"build {name}", f"{seconds} s", how))
    for image_seconds in re.findall(r"vmkube: built the node image in (\d+)s$", text, re.M):
        rows.append(("build the node image", f"{image_seconds} s", how))
    for minutes, seconds in re.findall(r"^(?:\S+ )?Duration: (\d+)m(\d+)s$", text, re.M):
        rows.append(("`pulumi up` of the local stack", f"{int(minutes) + int(seconds) / 60:.1f} min", how))
    for step, seconds in re.findall(r"^ci: (.+?) done in (\d+)s$", text, re.M):
        rows.append((step, f"{int(seconds) / 60:.1f} min" if int(seconds) > 120 else f"{seconds} s", how))
    tests = re.search(r"^=+ (?:(\d+) failed, )?(\d+) passed.* in ([\d.]+)s", text, re.M)
    if tests:
        failed = f", {tests.group(1)} failed" if tests.group(1) else ""
        rows.append(("make test", f"{float(tests.group(3)) / 60:.1f} min", f"{tests.group(2)} passed{failed}"))
    total = re.search(r"^ci: total (\d+)s", text, re.M)
    if total:
        rows.append(("`.ci/run` in all", f"{int(total.group(1)) / 60:.1f} min", how))
    if not rows:
        raise SystemExit(f"bench: no timings found in {log_path}")
    return rows


def section_text(name: str, rows: list[Row]) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [f"## {name} ({stamp}, {os.cpu_count()} cores, Python {platform.python_version()})", "",
             "| measure | value | note |", "|---|---|---|", *(f"| {a} | {b} | {c} |" for a, b, c in rows)]
    return "\n".join(lines) + "\n"


def earlier_sections(path: Path) -> dict[str, str]:
    """The file's sections by name ("## ssh (…)" up to the next "## ")."""
    found: dict[str, str] = {}
    name = ""
    for line in path.read_text().splitlines(keepends=True) if path.exists() else []:
        if line.startswith("## "):
            name = line[3:].split()[0]
            found[name] = ""
        if name:
            found[name] += line
    return {n: text.rstrip("\n") + "\n" for n, text in found.items()}


SECTIONS = {
    "ci": lambda: cold_rows("BENCH_CI_LOG", "CI as it runs: fresh clone, empty module and vmkube caches, "
                                            "Go build cache warm"),
    "cold": lambda: cold_rows("BENCH_COLD_LOG", "fresh clone, every cache empty (Go module and build, "
                                                "vmkube, pip, state, passphrase)"),
    "cold-ci": lambda: cold_rows("BENCH_COLD_CI_LOG", "`bash .ci/run` on a fresh machine: every cache empty, "
                                                      "Go build cache included"),
    "toolchain": toolchain_rows, "preview": preview_rows, "vcsim": vcsim_rows, "scale": scale_rows, "ssh": ssh_rows,
            "workloads": workloads_rows, "ha": ha_rows, "snapshot": snapshot_rows,
            "libvirt": libvirt_rows, "cluster": cluster_rows, "addons": stack_addon_rows,
            "conformance": conformance_rows}


def main() -> None:
    # The ci and cold sections read a CI log rather than measure: only when one is given.
    # The addons section reads a stack that is up, and conformance a report: only when named.
    logs = {"ci": "BENCH_CI_LOG", "cold": "BENCH_COLD_LOG", "cold-ci": "BENCH_COLD_CI_LOG"}
    only = [s for s in os.environ.get("BENCH_ONLY", "").split(",") if s] or \
        [s for s in SECTIONS if (s not in logs or os.environ.get(logs[s])) and s not in ("addons", "conformance")]
    fresh: dict[str, str] = {}
    for name in only:
        print(f"bench: {name} …", file=sys.stderr, flush=True)
        fresh[name] = section_text(name, SECTIONS[name]())
        print(fresh[name])
    # Sections not run this time keep their last results, each with its own date.
    out = ROOT / "bench" / "latest.md"
    sections = {**earlier_sections(out), **fresh}
    text = "# vmkube benchmarks\n\n" + "\n".join(sections[n] for n in SECTIONS if n in sections)
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
