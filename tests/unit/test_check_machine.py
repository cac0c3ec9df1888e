"""tools/check-machine: a machine that cannot do the job is refused before any work
starts, and every refusal says what to do. The rules run on canned facts; the script
itself runs for real on this machine and with Go taken off PATH."""

from __future__ import annotations

import dataclasses
import importlib.machinery
import importlib.util
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

SCRIPT = ROOT / "tools" / "check-machine"


def _load():
    loader = importlib.machinery.SourceFileLoader("check_machine", str(SCRIPT))
    spec = importlib.util.spec_from_loader("check_machine", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_machine"] = module  # dataclasses look their module up by name
    loader.exec_module(module)
    return module


cm = _load()
DISK = 200 * 1024
GOOD = cm.Facts(uid=0, sudo=True, go="/usr/local/go/bin/go", go_version="1.26.8", go_toolchain="local",
                go_required="1.26.6", toolchain_built=False, image_built=False,
                free_mib={k: DISK for k in cm.NEED_MIB}, devices={k: 1 for k in cm.NEED_MIB},
                mem_total_mib=24 * 1024, network="192.168.122.1/24", network_active=False,
                addresses=[("lo", "127.0.0.1/8"), ("eth0", "192.0.2.2/24")], busy_ports=[])


def test_a_machine_that_can_do_the_job_passes():
    assert cm.problems(GOOD) == []


@pytest.mark.parametrize("change, expected", [
    ({"uid": 1000, "sudo": False}, ["not root, and sudo is not available", "run as root, or give this user sudo"]),
    ({"go": "", "go_version": ""}, ["Go is not installed", "1.26.6 or newer", "https://go.dev/dl"]),
    ({"go_version": "1.22.1"}, ["Go 1.22.1 is older than the 1.26.6", "install Go 1.26.6 or newer"]),
    ({"go_version": ""}, ["does not report its version", "reinstall Go"]),
    ({"free_mib": {k: 5 * 1024 for k in cm.NEED_MIB}},
     ["not enough free disk for the Go module and build caches, the toolchain, the node image, the VM disks",
      "5.0 GiB free, 26 GiB needed", "free some space, or point"]),
    ({"mem_total_mib": 2048}, ["2048 MiB of memory", "use a larger machine, or a stack with smaller VMs"]),
    ({"addresses": [("eth1", "192.168.122.7/24")]},
     ["192.168.122.0/24, the range of libvirt's default network, is already used by eth1 (192.168.122.7/24)",
      "virsh net-edit default"]),
    ({"busy_ports": ["udp/67"]}, ["udp/67 is taken by another program", "stop that program (ss -lunp | grep :67)"]),
])
def test_each_refusal_names_what_to_do(change, expected):
    found = cm.problems(dataclasses.replace(GOOD, **change))
    assert len(found) == 1, found
    for text in expected:
        assert text in found[0], found[0]


def test_an_older_go_may_fetch_the_one_it_needs():
    # With GOTOOLCHAIN=auto the go command downloads the toolchain a go.mod asks for (module proxy).
    assert cm.problems(dataclasses.replace(GOOD, go_version="1.22.1", go_toolchain="auto")) == []


def test_disk_needs_add_up_per_filesystem_and_shrink_with_what_is_built():
    apart = {"go": 1, "toolchain": 2, "image": 2, "vms": 3}
    free = {"go": 15 * 1024, "toolchain": 7 * 1024, "image": 7 * 1024, "vms": 7 * 1024}
    assert cm.problems(dataclasses.replace(GOOD, devices=apart, free_mib=free)) == []
    tight = dict(free, toolchain=5 * 1024, image=5 * 1024)
    found = cm.problems(dataclasses.replace(GOOD, devices=apart, free_mib=tight))
    assert found == ["not enough free disk for the toolchain, the node image: 5.0 GiB free, 6 GiB needed; "
                     "free some space, or point VMKUBE_CACHE at a larger disk"]
    built = dataclasses.replace(GOOD, toolchain_built=True, image_built=True, free_mib={k: 7 * 1024 for k in apart})
    assert cm.problems(built) == []


def test_the_bridge_of_an_active_default_network_is_not_a_conflict():
    up = dataclasses.replace(GOOD, network_active=True, addresses=[("virbr0", "192.168.122.1/24")],
                             busy_ports=["udp/67"])
    assert cm.problems(up) == []


def test_this_machine_passes_and_reads_its_facts():
    proc = subprocess.run([str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    facts = subprocess.run([str(SCRIPT), "--facts"], capture_output=True, text=True, check=True).stdout
    assert '"go_required": "1.26.6"' in facts and '"uid": 0' in facts


def test_without_go_on_path_the_script_refuses_with_the_fix(tmp_path):
    # A PATH holding python3 and the few tools the script calls, but no go.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    for tool in ("ip", "sudo"):
        found = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        (bin_dir / tool).symlink_to(found)
    proc = subprocess.run([str(bin_dir / "python3"), str(SCRIPT)], capture_output=True, text=True,
                          env={**os.environ, "PATH": str(bin_dir)})
    assert proc.returncode == 2
    assert "vmkube: error: Go is not installed" in proc.stderr and "https://go.dev/dl" in proc.stderr, proc.stderr
