"""vmkube benchmarks: prints a Markdown table and writes it to bench/latest.md.

Measures ratios inside one run (the machines are noisy) and reports the
median of a few repetitions. Cold toolchain builds take minutes; their times
are the ones recorded when the cache was filled, unless BENCH_COLD=1 rebuilds
into empty caches now.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra import config  # noqa: E402
from infra.workloads import list_apps  # noqa: E402
from tests.helpers import example_raw  # noqa: E402

TOOLS = ("pulumi", "pulumi-language-python", "vcsim")
PROJECT_FILES = ("Pulumi.yaml", "__main__.py", "requirements.txt", "infra", "workloads", "tools", "Pulumi.local.yaml")


def timed(fn, repeat: int = 3) -> float:
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
    out = run(["bash", "-c", f'. "{ROOT}/tools/lib.sh" && vmkube_tool_dir {tool}'])
    return Path(out.strip())


def toolchain_rows() -> list[tuple[str, str, str]]:
    rows = []
    if os.environ.get("BENCH_COLD") == "1":
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "VMKUBE_CACHE": f"{tmp}/cache", "GOCACHE": f"{tmp}/gocache",
                   "GOMODCACHE": f"{tmp}/gomod"}
            start = time.perf_counter()
            run([str(ROOT / "tools" / "build")], env=env)
            rows.append(("toolchain cold build, all tools (measured now, empty caches)",
                         f"{time.perf_counter() - start:.0f} s", "BENCH_COLD=1"))
            run(["chmod", "-R", "u+w", tmp])
    for tool in TOOLS:
        recorded = tool_dir(tool) / ".build-seconds"
        value = f"{recorded.read_text().strip()} s" if recorded.exists() else "not built"
        rows.append((f"{tool} build, as recorded when its cache entry was made", value, "Go caches as they were then"))
    warm = timed(lambda: run([str(ROOT / "tools" / "build")]), repeat=3)
    rows.append(("toolchain warm run (`tools/build`, everything cached)", f"{warm:.2f} s", "median of 3"))
    return rows


def preview_rows() -> list[tuple[str, str, str]]:
    bin_dir = run([str(ROOT / "tools" / "build")]).strip().splitlines()[-1]
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        for name in PROJECT_FILES:
            src = ROOT / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, project / name)
        (project / ".venv").symlink_to(ROOT / ".venv")
        (Path(tmp) / "state").mkdir()
        env = {**os.environ,
               "PATH": os.pathsep.join([bin_dir, str(ROOT / ".venv" / "bin"), os.environ["PATH"]]),
               "PULUMI_BACKEND_URL": f"file://{tmp}/state", "PULUMI_HOME": f"{tmp}/home",
               "PULUMI_CONFIG_PASSPHRASE": "bench", "PULUMI_SKIP_UPDATE_CHECK": "true",
               "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
               "PULUMI_RUNTIME_VIRTUALENV": str(project / ".venv")}
        run(["pulumi", "stack", "init", "local"], env=env, cwd=project)
        preview = timed(lambda: run(["pulumi", "preview", "--stack", "local"], env=env, cwd=project))
        version = timed(lambda: run(["pulumi", "version"], env=env, cwd=project))

    raw = example_raw("prod")
    apps = list_apps(ROOT / "workloads")
    load = timed(lambda: config.load(raw, stack="prod", secret_keys={"vsphere"}, apps=apps), repeat=50)
    return [
        ("`pulumi preview`, local stack (skeleton)", f"{preview:.2f} s", "median of 3"),
        ("`pulumi version` (CLI start-up alone)", f"{version:.3f} s", "median of 3"),
        ("config load + validation, prod stack", f"{load * 1000:.2f} ms", "median of 50"),
        ("preview / CLI start-up", f"{preview / version:.1f}x", "same run"),
    ]


def main() -> None:
    rows = toolchain_rows() + preview_rows()
    cpu = f"{os.cpu_count()} cores, Python {platform.python_version()}"
    lines = [f"# vmkube benchmarks ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu})", "",
             "| measure | value | note |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "bench" / "latest.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
