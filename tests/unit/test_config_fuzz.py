"""The config loader under random input: hundreds of mutations of the example
stacks (types, ranges, shapes, unicode, control characters, shell metacharacters,
very long strings, missing and unknown keys). Every one must end in a spec that
keeps the invariants below, or in a ConfigError whose every line names a key —
never in another exception. The seed is fixed: a failure here replays exactly."""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import random
import re

import pytest

from tests.helpers import EXAMPLE_STACKS, example_raw, example_secret_keys
from vmkube import config
from vmkube.errors import ConfigError
from vmkube.fields import DNS_LABEL

SEED = 20261202
MUTATIONS = 700
NASTY = [None, True, False, 0, -1, 1, 65536, 2 ** 63, 1.5, float("nan"), "", " ", "x" * 5000, "démo", "名前",
         "a\nb", "demo\n", "\tdemo", "demo\r", "$(reboot)", "`id`", "; rm -rf /", "a'b\"c", "\x00", "\x1b[31m",
         "../../etc/passwd", "-rf", [], {}, {"a": 1}, ["x"], [None], "10.0.0.0/8", "0.0.0.0/0", "qemu+ext:///x",
         "https://mirror/{nope}", "1.34.4\n", "AB:CD", "ssh-ed25519 AAAA\n", "kubernetes.io/x", "key=v:Bogus"]
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, prefix + (i,))


def mutate(raw: dict, rng: random.Random) -> str:
    """Changes one place of ``raw`` in place; returns what it did, for the failure message."""
    path = rng.choice([p for p in paths(raw) if p])
    parent = raw
    for step in path[:-1]:
        parent = parent[step]
    key = path[-1]
    roll = rng.random()
    if roll < 0.1 and isinstance(parent, dict):
        del parent[key]
        return f"deleted {path}"
    if roll < 0.2 and isinstance(parent, dict):
        parent[rng.choice(["Name", "extra", "cpu", "memoryMB", "é"])] = rng.choice(NASTY)
        return f"added an unknown key beside {path}"
    if roll < 0.3:
        text = "".join(rng.choice("aZ9-_.:/@ \n\t\x00é;$") for _ in range(rng.randint(1, 80)))
        parent[key] = text
        return f"{path} = {text!r}"
    value = copy.deepcopy(rng.choice(NASTY))
    parent[key] = value
    return f"{path} = {value!r}"


def strings(value, where=""):
    """Every string inside a spec, with where it is."""
    if isinstance(value, config.Secret):
        return
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from strings(getattr(value, f.name), f"{where}.{f.name}")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(k, f"{where}[key]")
            yield from strings(v, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from strings(v, f"{where}[{i}]")
    elif isinstance(value, str):
        yield where, value


def check_invariants(spec: config.ClusterSpec, what: str) -> None:
    for where, text in strings(spec):
        assert not CONTROL.search(text), f"{what}: {where} accepted with a control character: {text!r}"
        assert len(text) <= 4096, f"{what}: {where} accepted at {len(text)} characters"
    assert DNS_LABEL.fullmatch(spec.name), what
    assert all(len(n.name) <= 63 and DNS_LABEL.fullmatch(n.name) for n in spec.nodes()), what
    assert 1 <= spec.ssh.port <= 65535 and 5 <= spec.ssh.connect_timeout <= 3600, what
    assert spec.control_plane.count in (1, 3), what
    k = spec.kubernetes
    assert isinstance(k.pod_cidr, ipaddress.IPv4Network) and not k.pod_cidr.overlaps(k.service_cidr), what
    assert re.fullmatch(r"1\.\d+\.\d+", k.version), what
    for pool in spec.worker_pools:
        assert 0 <= pool.count <= 500 and pool.machine.memory_mb >= config.WORKER_MIN_MEMORY_MB, what
        assert all(isinstance(v, str) for v in pool.labels.values()), what
    if spec.libvirt is not None:
        assert spec.libvirt.uri.split("://")[0] in config.LIBVIRT_SCHEMES, what
        assert not re.search(r"[?&](command|netcat|proxy|no_verify)=", spec.libvirt.uri), what


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_random_mutations_give_a_clean_error_or_a_valid_spec(stack):
    rng = random.Random(f"{SEED}-{stack}")
    accepted = refused = 0
    for i in range(MUTATIONS):
        raw = example_raw(stack)
        done = [mutate(raw, rng) for _ in range(rng.randint(1, 3))]
        what = f"seed {SEED}, {stack} #{i}: {'; '.join(done)}"
        try:
            spec = config.load(raw, stack=stack, secret_keys=example_secret_keys(stack), apps=["hello"])
        except ConfigError as exc:
            refused += 1
            assert exc.problems, what
            for line in exc.problems:
                assert line.startswith("vmkube:"), f"{what}: {line!r}"
                assert "Traceback" not in line, what
            continue
        except Exception as exc:  # noqa: BLE001 - exactly what this test must never see
            pytest.fail(f"{what}: {type(exc).__name__}: {exc}")
        accepted += 1
        check_invariants(spec, what)
    # The mutations must reach both ends, or this test proves little.
    assert refused > MUTATIONS // 2 and accepted > 10, (accepted, refused)


@pytest.mark.parametrize("value, problem", [
    ("demo\n", "vmkube:name: must not contain control characters"),
    ("Demo", "vmkube:name: must be a DNS label"),
])
def test_a_trailing_newline_or_a_capital_is_refused_in_a_name(value, problem):
    with pytest.raises(ConfigError) as err:
        config.load({**example_raw("local"), "name": value}, stack="local", apps=["hello"])
    assert err.value.problems[0].startswith(problem), err.value.problems


@pytest.mark.parametrize("thumbprint, ok", [
    ("AB:" * 19 + "CD", True), ("ab" * 32, True), (":".join(["0A"] * 64), True),
    ("AB:" * 20 + "CD", False), ("AB:" * 31 + "CD\n", False), ("ab" * 21, False),
])
def test_thumbprints_are_exactly_what_a_connection_can_check(thumbprint, ok):
    from vmkube.vms.tlspin import normalize
    raw = example_raw("dev")
    raw["vsphere"].pop("caFile", None)
    raw["vsphere"]["thumbprint"] = thumbprint
    try:
        config.load(raw, stack="dev", secret_keys=example_secret_keys("dev"))
        accepted = True
    except ConfigError as exc:
        accepted = False
        assert any("vmkube:vsphere.thumbprint" in p for p in exc.problems), exc.problems
    assert accepted is ok
    if ok:
        normalize(thumbprint)  # the connection takes what the config took


@pytest.mark.parametrize("uri, problem", [
    ("qemu+ext:///system?command=/usr/bin/evil", "must be a libvirt URI"),
    ("qemu+ssh://h/system?netcat=/tmp/nc", "parameter 'netcat' is not allowed"),
    ("qemu+ssh://h/system?no_verify=1", "parameter 'no_verify' is not allowed"),
    ("qemu+ssh://h/system?proxy=netcat", "parameter 'proxy' is not allowed"),
    ("qemu:///system\n", "must not contain control characters"),
    ("qemu+ssh://bad host/system", "must be a libvirt URI"),
])
def test_libvirt_uris_that_would_run_a_command_or_skip_host_keys_are_refused(uri, problem):
    raw = example_raw("local")
    raw["libvirt"]["uri"] = uri
    with pytest.raises(ConfigError) as err:
        config.load(raw, stack="local", apps=["hello"])
    assert any(p.startswith("vmkube:libvirt.uri: ") and problem in p for p in err.value.problems), err.value.problems


def test_the_transports_users_need_are_accepted():
    for uri in ("qemu:///system", "qemu:///session", "qemu+ssh://ops@kvm1.example.com:2222/system?keyfile=/k",
                "qemu+tls://kvm1/system?pkipath=/etc/pki", "qemu+unix:///system?socket=/run/x.sock"):
        raw = example_raw("local")
        raw["libvirt"]["uri"] = uri
        assert config.load(raw, stack="local", apps=["hello"]).libvirt.uri == uri
