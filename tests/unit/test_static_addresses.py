"""Static node addresses: the config that asks for them, the addresses nodes get, the
cloud-init documents that carry them, and the pool diff when they change."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from vmkube import config
from vmkube.addresses import parse_range, pool_addresses
from vmkube.contracts import PoolSpec, StaticNetwork
from vmkube.errors import ConfigError
from vmkube.stack.vmpool import VmPoolProvider
from vmkube.vms import cloudinit

NETWORK = {"mode": "static", "subnet": "192.168.150.0/24", "gateway": "192.168.150.1"}


def stack(**kw: Any) -> dict[str, Any]:
    raw = {"hypervisor": "libvirt", "network": dict(NETWORK),
           "controlPlane": {"addresses": "192.168.150.10-192.168.150.12"},
           "workerPools": [{"name": "worker", "count": 2,
                            "addresses": ["192.168.150.20", "192.168.150.30-192.168.150.31"]}]}
    raw.update(kw)
    return raw


def text(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        config.load(raw, stack="t")
    return str(caught.value)


def test_each_node_gets_the_address_of_its_place_in_the_pool():
    spec = config.load(stack(), stack="t")
    assert [(n.name, n.address) for n in spec.nodes()] == [
        ("t-cp-1", "192.168.150.10"), ("t-worker-1", "192.168.150.20"), ("t-worker-2", "192.168.150.30")]
    assert spec.network.gateway == "192.168.150.1"
    assert spec.network.dns_servers == ("192.168.150.1",)  # the gateway unless told otherwise


def test_growing_or_shrinking_a_pool_moves_no_other_node():
    ranges = (parse_range("10.0.0.10-10.0.0.11"), parse_range("10.0.0.50"), parse_range("10.0.0.60-10.0.0.70"))
    three, five = pool_addresses(ranges, 3), pool_addresses(ranges, 5)
    assert three == ("10.0.0.10", "10.0.0.11", "10.0.0.50")
    assert five[:3] == three and five[3:] == ("10.0.0.60", "10.0.0.61")


def test_dhcp_stays_the_default_and_nodes_have_no_address():
    raw = {"hypervisor": "libvirt", "workerPools": [{"name": "worker", "count": 1}]}
    spec = config.load(raw, stack="t")
    assert not spec.network.static and {n.address for n in spec.nodes()} == {""}


@pytest.mark.parametrize("change, key, message", [
    (dict(network={**NETWORK, "gateway": "192.168.151.1"}), "vmkube:network.gateway", "outside vmkube:network.subnet"),
    (dict(network={**NETWORK, "gateway": "192.168.150.255"}), "vmkube:network.gateway", "broadcast"),
    (dict(network={**NETWORK, "subnet": "192.168.150.1/24"}), "vmkube:network.subnet", "CIDR"),
    (dict(network={"mode": "static", "gateway": "192.168.150.1"}), "vmkube:network.subnet", "is required"),
    (dict(network={**NETWORK, "dnsServers": ["dns.example"]}), "vmkube:network.dnsServers[0]", "IPv4 address"),
    (dict(network={**NETWORK, "searchDomains": ["Not A Domain"]}), "vmkube:network.searchDomains[0]", "DNS domain"),
    (dict(network={"mode": "dhcp", "gateway": "192.168.150.1"}), "vmkube:network.gateway", "only applies"),
    (dict(network={"mode": "manual"}), "vmkube:network.mode", "dhcp"),
    (dict(controlPlane={"addresses": "192.168.150.20"}), "vmkube:workerPools[0].addresses",
     "overlaps 192.168.150.20 of vmkube:controlPlane.addresses"),
    (dict(controlPlane={"addresses": ["192.168.150.10-192.168.150.12", "192.168.150.11"]}),
     "vmkube:controlPlane.addresses", "of itself"),
    (dict(workerPools=[{"name": "worker", "count": 3, "addresses": "192.168.150.20-192.168.150.21"}]),
     "vmkube:workerPools[0].addresses", "holds 2 address(es) but the pool has 3 nodes"),
    (dict(workerPools=[{"name": "worker", "count": 1}]), "vmkube:workerPools[0].addresses", "is required"),
    (dict(controlPlane={"addresses": "192.168.150.0-192.168.150.2"}), "vmkube:controlPlane.addresses",
     "the network address"),
    (dict(controlPlane={"addresses": "192.168.150.1"}), "vmkube:controlPlane.addresses", "the gateway"),
    (dict(controlPlane={"addresses": "10.0.0.5"}), "vmkube:controlPlane.addresses", "outside vmkube:network.subnet"),
    (dict(controlPlane={"addresses": "192.168.150.12-192.168.150.10"}), "vmkube:controlPlane.addresses",
     "ends before it starts"),
    (dict(controlPlane={"addresses": "192.168.150.x"}), "vmkube:controlPlane.addresses", "IPv4 address or a range"),
    (dict(controlPlane={"addresses": 7}), "vmkube:controlPlane.addresses", "address range"),
    (dict(controlPlane={"addresses": "10.0.0.1-10.9.0.1"}), "vmkube:controlPlane.addresses", "more than 4096"),
])
def test_bad_static_addressing_names_the_key(change, key, message):
    out = text(stack(**change))
    line = next((ln for ln in out.splitlines() if ln.strip().startswith(key + ":")), None)
    assert line is not None and message in line, out


def test_static_addresses_inside_the_pod_or_service_range_are_refused():
    raw = stack(network={"mode": "static", "subnet": "10.96.0.0/24", "gateway": "10.96.0.1"},
                controlPlane={"addresses": "10.96.0.10"},
                workerPools=[{"name": "worker", "count": 1, "addresses": "10.96.0.20"}])
    out = text(raw)
    assert "vmkube:controlPlane.addresses: 10.96.0.10 lies inside vmkube:kubernetes.serviceCidr" in out
    raw = stack(network={"mode": "static", "subnet": "10.244.7.0/24", "gateway": "10.244.7.1"},
                controlPlane={"addresses": "10.244.7.10"},
                workerPools=[{"name": "worker", "count": 1, "addresses": "10.244.7.20"}])
    assert "vmkube:workerPools[0].addresses: 10.244.7.20 lies inside vmkube:kubernetes.podCidr" in text(raw)


def test_a_missing_list_is_hinted_with_addresses_of_the_stacks_own_subnet():
    raw = stack(network={"mode": "static", "subnet": "10.20.0.0/24", "gateway": "10.20.0.1"},
                controlPlane={"addresses": "10.20.0.5"}, workerPools=[{"name": "worker", "count": 3}])
    assert ("vmkube:workerPools[0].addresses: is required with vmkube:network.mode static: 3 address(es) on "
            "10.20.0.0/24, like 10.20.0.10-10.20.0.12") in text(raw)
    small = stack(network={"mode": "static", "subnet": "10.20.0.0/29", "gateway": "10.20.0.1"},
                  controlPlane={"addresses": "10.20.0.6"}, workerPools=[{"name": "worker", "count": 2}])
    assert "on 10.20.0.0/29, like 10.20.0.2-10.20.0.3" in text(small)  # past the gateway


def test_an_address_that_does_not_parse_is_one_problem_not_two():
    out = text(stack(workerPools=[{"name": "worker", "count": 2, "addresses": "192.168.150.x"}]))
    assert [ln.strip() for ln in out.splitlines() if "workerPools[0].addresses" in ln] == [
        "vmkube:workerPools[0].addresses: must be an IPv4 address or a range like 10.0.0.10-10.0.0.19 "
        "(got '192.168.150.x')"], out


def test_addresses_without_static_mode_are_refused():
    raw = {"hypervisor": "libvirt", "controlPlane": {"addresses": "192.168.150.10"}}
    assert "vmkube:controlPlane.addresses: static addresses need vmkube:network.mode static" in text(raw)


# -- cloud-init ------------------------------------------------------------------------------

NIC = cloudinit.StaticNic(address="192.168.150.10", prefix=24, gateway="192.168.150.1",
                          dns_servers=("192.168.150.1", "9.9.9.9"), search_domains=("lab.example",),
                          mac="52:54:00:AA:BB:CC")


def seed(network=NIC) -> cloudinit.NodeSeed:
    return cloudinit.NodeSeed("n-1", "n-1", "vmkube", "ssh-ed25519 AAAA", "PRIVATE", "ssh-ed25519 BBBB",
                              network=network)


def test_the_network_config_binds_the_address_to_the_nics_mac():
    doc = yaml.safe_load(cloudinit.network_config(seed()))
    assert doc == {"version": 2, "ethernets": {"eth0": {
        "match": {"macaddress": "52:54:00:aa:bb:cc"}, "set-name": "eth0", "dhcp4": False,
        "addresses": ["192.168.150.10/24"], "gateway4": "192.168.150.1",
        "nameservers": {"addresses": ["192.168.150.1", "9.9.9.9"], "search": ["lab.example"]}}}}
    user = yaml.safe_load(cloudinit.user_data(seed()))
    assert user["write_files"] == [{"path": "/etc/resolv.conf", "permissions": "0644",
                                    "content": "nameserver 192.168.150.1\nnameserver 9.9.9.9\nsearch lab.example\n"}]
    # vSphere: the same document inside guestinfo.metadata.
    meta = yaml.safe_load(cloudinit.meta_data(seed(), with_network=True))
    assert meta["network"] == doc and meta["instance-id"] == "n-1"


def test_dhcp_nodes_get_no_network_documents():
    plain = seed(network=None)
    assert cloudinit.network_config(plain) is None
    assert "write_files" not in yaml.safe_load(cloudinit.user_data(plain))
    assert "network" not in yaml.safe_load(cloudinit.meta_data(plain, with_network=True))


def test_a_static_address_without_a_mac_is_a_bug_not_a_guess():
    with pytest.raises(ValueError, match="n-1: the static network configuration needs the NIC's MAC"):
        cloudinit.network_config(seed(network=cloudinit.StaticNic("10.0.0.5", 24, "10.0.0.1")))


# -- the pool's diff -----------------------------------------------------------------------------

NET = StaticNetwork(prefix=24, gateway="192.168.150.1", dns_servers=("192.168.150.1",))


def props(names=("w-1", "w-2"), addresses=("192.168.150.20", "192.168.150.21"), network=NET) -> dict[str, Any]:
    spec = PoolSpec(owner="o", names=tuple(names), cpus=2, memory_mb=2048, disk_gb=20, image="img",
                    ssh_user="vmkube", ssh_public_key="ssh-ed25519 AAAA", network=network,
                    addresses=tuple(addresses) if network else ())
    out = spec.to_props()
    out["hypervisor"] = {"kind": "libvirt", "uri": "qemu:///system", "storagePool": "default"}
    return out


def olds(**kw) -> dict[str, Any]:
    p = props(**kw)
    p["vms"] = [{"name": n, "power": "on", "cpus": 2, "memoryMb": 2048, "diskGb": 20} for n in p["names"]]
    return p


def test_contract_round_trips_the_static_network():
    spec = PoolSpec.from_props(props())
    assert spec.network == NET and spec.address_of() == {"w-1": "192.168.150.20", "w-2": "192.168.150.21"}
    assert PoolSpec.from_props(props(network=None)).address_of() == {}


def test_a_new_range_for_existing_nodes_replaces_the_pool():
    d = VmPoolProvider().diff("o", olds(), props(addresses=("192.168.150.40", "192.168.150.41")))
    assert d.replaces == ["addresses"] and d.delete_before_replace is True
    moved = StaticNetwork(prefix=24, gateway="192.168.150.254", dns_servers=("192.168.150.1",))
    assert VmPoolProvider().diff("o", olds(), props(network=moved)).replaces == ["network"]
    assert VmPoolProvider().diff("o", olds(network=None), props()).replaces == ["network"]


def test_a_pool_that_grows_keeps_its_nodes():
    grown = props(names=("w-1", "w-2", "w-3"), addresses=("192.168.150.20", "192.168.150.21", "192.168.150.22"))
    d = VmPoolProvider().diff("o", olds(), grown)
    assert d.changes is True and d.replaces == []
    assert VmPoolProvider().diff("o", olds(), props()).changes is False



def test_the_component_path_keeps_every_setting_of_the_stack_config():
    """The repo's program goes through ClusterArgs: nothing a stack sets may be lost there
    (static addresses, add-on switches, the image repository)."""
    from vmkube.args import ClusterArgs, raw_config
    raw = stack(kubernetes={"imageRepository": "mirror.example.com/k8s", "preloadImages": False,
                            "addons": {"corednsReplicas": 1, "metricsServer": False, "networkPolicy": False}})
    raw["network"]["searchDomains"] = ["lab.example"]
    raw["etcd"] = {"snapshots": {"keep": 3}}
    spec = config.load(raw, stack="t")
    assert spec.etcd.snapshots_keep == 3
    again_raw, secrets = raw_config(spec.name, ClusterArgs.from_spec(spec))
    assert config.load(again_raw, stack="t", secret_keys=secrets) == spec
