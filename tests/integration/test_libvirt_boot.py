"""A real VM on real libvirtd + QEMU (TCG): boots the built node image, gets
an address from the DHCP lease, and takes an SSH login that verifies the host
key vmkube generated and pinned before the VM existed."""

from __future__ import annotations

import paramiko
import pytest

from infra import pool
from infra.hypervisors.libvirt import LibvirtHypervisor
from infra.sshkeys import generate_ed25519
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
