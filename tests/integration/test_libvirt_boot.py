"""A real VM on real libvirtd + QEMU (TCG): boots the built node image, gets
an address from the DHCP lease, and takes an SSH login that verifies the host
key vmkube generated and pinned before the VM existed."""

from __future__ import annotations

import paramiko
import pytest

from vmkube.vms import pool
from vmkube.vms.libvirt import LibvirtHypervisor
from vmkube.sshkeys import generate_ed25519
from tests import sshcheck
from tests.fixtures.libvirt import leftovers


def test_boot_ip_and_pinned_ssh_login(system_libvirt, node_image, vm_prefix):
    user_key = generate_ed25519("operator")
    name = f"{vm_prefix}-boot-1"
    spec = pool.PoolSpec(owner=f"vmkube/tests/{vm_prefix}", names=(name,), cpus=1, memory_mb=1024, disk_gb=6,
                         image=str(node_image), ssh_user="vmkube", ssh_public_key=user_key.public_openssh,
                         config_path="vmkube:workerPools[0]")
    hv = LibvirtHypervisor(system_libvirt, "default", "default")
    try:
        state = pool.converge(hv, spec, rollback=True, ip_timeout=300)
        [vm] = state.vms
        assert vm.ip.startswith("192.168.122.") and vm.power == "on"
        host_public = state.host_keys[name].public_openssh

        with pytest.raises(paramiko.BadHostKeyException):
            impostor = generate_ed25519().public_openssh
            sshcheck.login(vm.ip, "vmkube", user_key.private_openssh, impostor, timeout=300)

        client = sshcheck.login(vm.ip, "vmkube", user_key.private_openssh, host_public, timeout=300)
        try:
            code, out, _ = sshcheck.run(client, "hostname; sudo -n cloud-init status --wait >/dev/null; "
                                                "sudo -n cloud-init schema --system; "
                                                "df --output=size -BG / | tail -1")
            hostname, *rest = out.split("\n")
            assert code == 0, out
            assert hostname == name
            assert "Valid cloud-config" in out
            assert int(rest[-2].strip().rstrip("G")) >= 5  # the root filesystem grew to the disk
        finally:
            client.close()
    finally:
        pool.remove_all(hv, spec.owner, list(spec.names), spec.image)
        hv.close()
    assert leftovers(system_libvirt, vm_prefix) == []


def test_a_static_address_on_a_network_without_dhcp(system_libvirt, node_image, vm_prefix, static_network):
    """No DHCP on the network: the VM answers SSH at the address its seed gave it, named
    eth0 by its MAC, with the gateway as its default route and the DNS servers asked for."""
    from vmkube.contracts import StaticNetwork
    from tests.fixtures.libvirt import STATIC_GATEWAY

    user_key = generate_ed25519("operator")
    name = f"{vm_prefix}-static-1"
    address = "192.168.151.20"
    net = StaticNetwork(prefix=24, gateway=STATIC_GATEWAY, dns_servers=(STATIC_GATEWAY,),
                        search_domains=("lab.example",))
    spec = pool.PoolSpec(owner=f"vmkube/tests/{vm_prefix}", names=(name,), cpus=1, memory_mb=1024, disk_gb=6,
                         image=str(node_image), ssh_user="vmkube", ssh_public_key=user_key.public_openssh,
                         config_path="vmkube:workerPools[0]", network=net, addresses=(address,))
    hv = LibvirtHypervisor(system_libvirt, static_network, "default")
    try:
        state = pool.converge(hv, spec, rollback=True)
        [vm] = state.vms
        assert vm.ip == address
        client = sshcheck.login(address, "vmkube", user_key.private_openssh,
                                state.host_keys[name].public_openssh, timeout=300)
        try:
            code, out, _ = sshcheck.run(client, "sudo -n cloud-init status --wait >/dev/null; "
                                                "ip -4 -o addr show dev eth0; ip route show default; "
                                                "cat /etc/resolv.conf")
        finally:
            client.close()
        assert code == 0, out
        assert f"inet {address}/24" in out
        assert f"default via {STATIC_GATEWAY}" in out
        assert f"nameserver {STATIC_GATEWAY}" in out and "search lab.example" in out
    finally:
        pool.remove_all(hv, spec.owner, list(spec.names), spec.image)
        hv.close()
    assert leftovers(system_libvirt, vm_prefix) == []
