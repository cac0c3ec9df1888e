"""Preflight against real OpenSSH hosts (network namespaces on this machine's
kernel): facts are read in one command, problems are named per node, and
nothing is changed."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vmkube.errors import NodesFailed
from vmkube.nodes.phases import Node, run_phases
from vmkube.bootstrap.preflight import MODULES, NODE_COMMANDS, ROLE_COMMANDS, Facts, Preflight, gather, problems
from vmkube.nodes.ssh import Session


def node(lab, name: str, role: str = "control-plane") -> Node:
    host = lab.hosts[name]
    return Node(f"n-{name}", role, host.ip, Session(f"n-{name}", host.endpoint(), lab.user_key.private_openssh))


GOOD_FACTS = Facts(os="debian", os_version="12", arch="x86_64", mem_mib=2000, disk_free_mib=8000, swap_devices=0,
                   modules={m: True for m in MODULES}, ports=frozenset({22}), bootstrapped=False, sudo=True,
                   skew_seconds=0.0)


def local_modules() -> dict[str, bool]:
    """The test hosts share this kernel: what it has is what preflight must report."""
    release = os.uname().release
    return {m: Path(f"/sys/module/{m}").is_dir() or any(Path(f"/lib/modules/{release}").rglob(f"{m}.ko*"))
            for m in MODULES}


def local_missing(role: str) -> list[str]:
    """The test hosts run this machine's programs: the commands it lacks, as preflight names them."""
    needed = {**NODE_COMMANDS, **ROLE_COMMANDS.get(role, {})}
    missing = sorted(c for c in needed if not shutil.which(c, path="/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                                                                 "/usr/bin:/sbin:/bin"))
    facts = dataclasses.replace(GOOD_FACTS, missing_commands=frozenset(missing))
    return problems(facts, role, 0)


def test_facts_come_from_the_node(ssh_lab):
    ssh_lab.start("direct")
    n = node(ssh_lab, "direct")
    try:
        facts = gather(n)
    finally:
        n.session.close()
    assert facts.arch == os.uname().machine
    local_mem = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1]) // 1024
    assert abs(facts.mem_mib - local_mem) <= 1
    assert 22 in facts.ports and 6443 not in facts.ports
    assert facts.sudo and not facts.bootstrapped
    assert facts.modules == local_modules()
    assert abs(facts.skew_seconds) < 2
    modules = [f"kernel module {m} is not available" for m, ok in local_modules().items() if not ok]
    assert problems(facts, "control-plane", 0) == [*modules, *local_missing("control-plane")]


def test_each_problem_is_named_per_node_and_nothing_is_changed(ssh_lab, caplog):
    caplog.set_level("INFO", logger="vmkube")
    ssh_lab.start("direct")
    ssh_lab.start("bastion")
    # Something already listens on the API server's port on one node.
    busy = subprocess.Popen(["ip", "netns", "exec", ssh_lab.hosts["direct"].ns, sys.executable, "-m",
                             "http.server", "6443", "--bind", ssh_lab.hosts["direct"].ip],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nodes = [node(ssh_lab, "direct"), node(ssh_lab, "bastion", role="worker")]
    try:
        deadline = time.monotonic() + 10
        while 6443 not in gather(nodes[0]).ports:
            assert time.monotonic() < deadline, "the listener did not start"
            time.sleep(0.2)
        caplog.clear()
        with pytest.raises(NodesFailed) as err:
            run_phases(nodes, [Preflight(memory_mb={"n-direct": 2048, "n-bastion": 4 * 1024 * 1024})])
    finally:
        busy.terminate()
        busy.wait()
        for n in nodes:
            n.session.close()
    failures = err.value.failures
    missing = [f"kernel module {m} is not available" for m, ok in local_modules().items() if not ok]
    assert failures["n-direct"].split("; ") == [*missing, *local_missing("control-plane"), "port 6443 already in use"]
    bastion = failures["n-bastion"].split("; ")
    assert bastion[0].endswith("MiB of memory, the stack asks for 4194304 MiB")
    assert bastion[1:] == [*missing, *local_missing("worker")]  # a worker does not need 6443
    assert str(err.value).startswith("preflight failed on 2 of 2 nodes:")
    commands = [r.getMessage() for r in caplog.records if r.name == "vmkube.ssh" and "connected" not in r.getMessage()]
    assert sorted(commands) == ["n-bastion: reading facts (once cloud-init is done)",
                                "n-direct: reading facts (once cloud-init is done)"]  # one read, nothing else


def test_clock_skew_is_caught(ssh_lab):
    fake = ssh_lab.hosts["direct"].workdir / "fakebin"
    fake.mkdir()
    # The node's clock runs an hour behind.
    (fake / "date").write_text('#!/bin/sh\nexec /bin/date -d "@$(( $(/bin/date +%s) - 3600 ))" "$@"\n')
    (fake / "date").chmod(0o755)
    ssh_lab.start("direct", env_path=f"{fake}:/usr/sbin:/usr/bin:/sbin:/bin")
    n = node(ssh_lab, "direct")
    try:
        facts = gather(n)
    finally:
        n.session.close()
    assert -3610 < facts.skew_seconds < -3590
    assert any(p.startswith("clock is -36") and "s off this machine's" in p for p in problems(facts, "worker", 1024))


def test_a_bootstrapped_node_owns_its_ports():
    from vmkube.bootstrap.preflight import Facts
    facts = Facts(os="debian", os_version="12", arch="x86_64", mem_mib=2000, disk_free_mib=9000, swap_devices=0,
                  modules={m: True for m in MODULES}, ports=frozenset({22, 6443, 2379}), bootstrapped=True,
                  sudo=True, skew_seconds=0.0)
    assert problems(facts, "control-plane", 2048) == []
    assert problems(Facts(**{**facts.__dict__, "bootstrapped": False}), "control-plane", 2048) == [
        "ports 2379, 6443 already in use"]
    assert problems(Facts(**{**facts.__dict__, "swap_devices": 1}), "worker", 1024) == [
        "swap is on; the kubelet needs it off (swapoff -a, and remove it from /etc/fstab)"]
