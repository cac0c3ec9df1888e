"""Nothing built or downloaded is committed: the repository holds sources only."""

from __future__ import annotations

import subprocess

from tests.helpers import ROOT

BUILT = (".whl", ".egg", ".tar", ".tar.gz", ".tgz", ".zip", ".qcow2", ".iso", ".img", ".so", ".pyc")
MAX_BYTES = 512 * 1024  # the largest source file (a go.sum) is far below this


def tracked() -> list[str]:
    return subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.split("\0")[:-1]


def test_no_build_output_or_download_is_tracked():
    files = tracked()
    assert files, "not a git checkout"
    assert [f for f in files if f.endswith(BUILT)] == []
    big = [f for f in files if (ROOT / f).is_file() and (ROOT / f).stat().st_size > MAX_BYTES]
    assert big == []


def test_gitignore_covers_what_the_tools_make():
    ignored = subprocess.run(["git", "check-ignore", "--no-index", ".venv/bin/python", "x.whl", "dist/a",
                              "vmkube.egg-info/PKG-INFO", "kubeconfig-local", "disk.qcow2"],
                             cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert len(ignored) == 6, ignored
