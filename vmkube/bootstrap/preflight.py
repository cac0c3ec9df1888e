"""Preflight: read each node's facts in one command and check them before
anything is changed. Every problem is reported, per node, in one error."""

from __future__ import annotations

import time
from dataclasses import dataclass

from vmkube.errors import VmkubeError
from vmkube.roles import CONTROL_PLANE

from vmkube.nodes.phases import PARALLEL, Node

CONTROL_PLANE_PORTS = (2379, 2380, 6443, 10250, 10256, 10257, 10259)
WORKER_PORTS = (6443, 10250, 10256)  # 6443: the local load balancer in front of the API servers
MODULES = ("br_netfilter", "overlay")
ARCHES = ("x86_64", "aarch64")
# Certificates are backdated five minutes (vmkube/pki.py), so a node some seconds off
# still accepts them; beyond a minute its time sync is broken. Freshly booted TCG
# VMs were measured up to 14 s off before their clocks settled.
MAX_SKEW_SECONDS = 60.0
MIN_FREE_DISK_MIB = 2048
# The kernel keeps some memory for itself: a 2048 MiB VM reports about 1950 MiB.
MEMORY_SLACK = 0.85
BOOTSTRAPPED_MARKER = "/var/lib/vmkube/bootstrapped"
# What vmkube runs on a node but does not install: vmkube's libvirt image has them all; a
# vSphere template must too. Command -> the Debian/Ubuntu package that brings it.
NODE_COMMANDS = {"containerd": "containerd", "ctr": "containerd", "runc": "runc", "iptables": "iptables",
                 "conntrack": "conntrack"}
ROLE_COMMANDS = {CONTROL_PLANE: {"curl": "curl"}, "worker": {"haproxy": "haproxy"}}
ALL_COMMANDS = sorted({*NODE_COMMANDS, *(c for cmds in ROLE_COMMANDS.values() for c in cmds)})

# One command, so one round trip. Its own duration is timed with the node's
# uptime, which no clock step moves (a booting node may step its wall clock
# while cloud-init runs), so the wall clock read at the end can be placed in
# this machine's time despite a long wait for cloud-init.
FACTS_SCRIPT = r"""
echo "started_up=$(cut -d' ' -f1 /proc/uptime)"
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
# cloud-init may still be writing users, keys and hostname: let it finish first. A node
# vmkube bootstrapped finished it long ago, and asking costs a Python start (30 s and more
# on a busy emulated control plane).
if [ ! -e /var/lib/vmkube/bootstrapped ] && command -v cloud-init >/dev/null 2>&1; then
  cloud-init status --wait >/dev/null 2>&1 || true
fi
. /etc/os-release 2>/dev/null; echo "os=${ID:-unknown}"; echo "os_version=${VERSION_ID:-}"
echo "arch=$(uname -m)"
echo "mem_mib=$(awk '/^MemTotal:/ {print int($2/1024)}' /proc/meminfo)"
echo "disk_free_mib=$(df -Pm / | awk 'NR==2 {print $4}')"
echo "swap_devices=$(awk 'NR>1' /proc/swaps | wc -l)"
for m in br_netfilter overlay; do
  if [ -d "/sys/module/$m" ] || modprobe -n "$m" 2>/dev/null \
     || find "/lib/modules/$(uname -r)" -name "$m.ko*" 2>/dev/null | grep -q .; then
    echo "module_$m=1"; else echo "module_$m=0"; fi
done
echo "ports=$(ss -Htln 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -un | tr '\n' ' ')"
# Ports held by vmkube's own services are fine: a half-finished earlier run installed them.
if [ -e /var/lib/vmkube/bootstrapped ] || [ -e /etc/systemd/system/kubelet.service ]; then
  echo bootstrapped=1; else echo bootstrapped=0; fi
if sudo -n true 2>/dev/null; then echo sudo=1; else echo sudo=0; fi
echo "missing=$(for c in @COMMANDS@; do command -v "$c" >/dev/null 2>&1 || printf '%s ' "$c"; done)"
echo "now=$(date +%s.%N)"
echo "now_up=$(cut -d' ' -f1 /proc/uptime)"
""".replace("@COMMANDS@", " ".join(ALL_COMMANDS))


@dataclass(frozen=True)
class Facts:
    os: str
    os_version: str
    arch: str
    mem_mib: int
    disk_free_mib: int
    swap_devices: int
    modules: dict[str, bool]
    ports: frozenset[int]
    bootstrapped: bool
    sudo: bool
    skew_seconds: float
    missing_commands: frozenset[str] = frozenset()  # of ALL_COMMANDS


def gather(node: Node) -> Facts:
    sent = time.time()
    out = node.session.run(["sh", "-c", FACTS_SCRIPT], label="reading facts (once cloud-init is done)").stdout
    return parse_facts(out, sent, time.time())


def parse_facts(out: str, sent: float, received: float) -> Facts:
    """The facts script's output, read at ``received`` after being asked for at ``sent``."""
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    missing = [k for k in ("arch", "mem_mib", "started_up", "now", "now_up") if not values.get(k)]
    if missing:
        raise PreflightFailed(f"could not read the node's facts (no {', '.join(missing)} in: {out.strip()[-300:]!r})")
    now = float(values["now"])
    busy = float(values["now_up"]) - float(values["started_up"])
    # NTP's estimate: the network time is the round trip less the node's own
    # time, assumed the same each way; the answer is good to that one-way time.
    one_way = max(0.0, ((received - sent) - busy) / 2)
    skew = now - (received - one_way)
    uncertainty = one_way + 0.02  # uptime has 10 ms steps
    return Facts(
        os=values.get("os", ""), os_version=values.get("os_version", ""), arch=values.get("arch", ""),
        mem_mib=int(values.get("mem_mib") or 0), disk_free_mib=int(values.get("disk_free_mib") or 0),
        swap_devices=int(values.get("swap_devices") or 0),
        modules={m: values.get(f"module_{m}") == "1" for m in MODULES},
        ports=frozenset(int(p) for p in values.get("ports", "").split() if p.isdigit()),
        bootstrapped=values.get("bootstrapped") == "1", sudo=values.get("sudo") == "1",
        skew_seconds=skew if abs(skew) > uncertainty else 0.0,
        missing_commands=frozenset(values.get("missing", "").split()),
    )


def problems(facts: Facts, role: str, memory_mb: int) -> list[str]:
    found = []
    if facts.arch not in ARCHES:
        found.append(f"architecture {facts.arch or 'unknown'} is not supported ({', '.join(ARCHES)})")
    if facts.os not in ("debian", "ubuntu"):
        found.append(f"OS {facts.os} {facts.os_version} is not supported (Debian 12 or Ubuntu)")
    if facts.mem_mib < memory_mb * MEMORY_SLACK:
        found.append(f"{facts.mem_mib} MiB of memory, the stack asks for {memory_mb} MiB")
    if facts.disk_free_mib < MIN_FREE_DISK_MIB:
        found.append(f"{facts.disk_free_mib} MiB free on /, needs {MIN_FREE_DISK_MIB} MiB")
    if facts.swap_devices:
        found.append("swap is on; the kubelet needs it off (swapoff -a, and remove it from /etc/fstab)")
    for module, present in facts.modules.items():
        if not present:
            found.append(f"kernel module {module} is not available")
    if abs(facts.skew_seconds) > MAX_SKEW_SECONDS:
        found.append(f"clock is {facts.skew_seconds:+.0f}s off this machine's; certificates would fail "
                     "(enable time sync)")
    if not facts.sudo:
        found.append("the SSH user cannot run sudo without a password")
    needed = {**NODE_COMMANDS, **ROLE_COMMANDS.get(role, {})}
    missing = sorted(set(needed) & facts.missing_commands)
    if missing:
        packages = sorted({needed[c] for c in missing})
        found.append(f"command{'s' if len(missing) > 1 else ''} {', '.join(missing)} not found "
                     f"(the node image needs the package{'s' if len(packages) > 1 else ''} {', '.join(packages)})")
    if not facts.bootstrapped:
        wanted = CONTROL_PLANE_PORTS if role == CONTROL_PLANE else WORKER_PORTS
        busy = sorted(set(wanted) & facts.ports)
        if busy:
            found.append(f"port{'s' if len(busy) > 1 else ''} {', '.join(map(str, busy))} already in use")
    return found


class PreflightFailed(VmkubeError):
    pass


@dataclass
class Preflight:
    """Checks every node; changes nothing: its decision is a list of problems, never a command."""
    memory_mb: dict[str, int]  # node name -> memory the stack asks for
    title: str = "preflight"
    mode: str = PARALLEL

    def applies(self, node: Node) -> bool:
        return True

    def facts(self, node: Node) -> Facts:
        return gather(node)

    def decide(self, node: Node, facts: Facts) -> list[str]:
        return problems(facts, node.role, self.memory_mb.get(node.name, 0))

    def run(self, node: Node) -> None:
        found = self.decide(node, self.facts(node))
        if found:
            raise PreflightFailed("; ".join(found))
