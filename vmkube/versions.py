"""What vmkube pins per Kubernetes minor: the add-ons' versions (kubeadm's CoreDNS pin,
metrics-server and kube-network-policies releases that support that minor).

A minor without a row here is refused at preview, naming vmkube:kubernetes.version.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pins:
    coredns: str
    metrics_server: str
    network_policies: str
    pause: str = "3.10"


PINS = {
    "1.34": Pins(coredns="v1.12.1", metrics_server="v0.8.0", network_policies="v0.8.0"),
    "1.33": Pins(coredns="v1.12.0", metrics_server="v0.8.0", network_policies="v0.8.0"),
}
DEFAULT_REPOSITORY = "registry.k8s.io"


def minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def pins_for(version: str) -> Pins:
    return PINS[minor(version)]
