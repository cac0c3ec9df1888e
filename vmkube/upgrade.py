"""Which changes of vmkube:kubernetes.version an existing cluster takes, by Kubernetes'
version skew policy: upgrades only, one minor at a time (kubeadm and kubespray refuse
the same). Checked at preview, against the version the cluster was last converged on."""

from __future__ import annotations

KEY = "vmkube:kubernetes.version"


def _parts(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(p) for p in version.split("."))
    return major, minor, patch


def refusal(running: str, wanted: str) -> str | None:
    """Why the cluster on ``running`` cannot go to ``wanted`` in one `up`, or None."""
    if not running or running == wanted:
        return None
    old, new = _parts(running), _parts(wanted)
    if new < old:
        return (f"{KEY}: {running} -> {wanted} is a downgrade, which Kubernetes does not support; to go back, "
                f"restore an etcd snapshot taken on {running} (make restore) after setting it back")
    if new[1] > old[1] + 1:
        return (f"{KEY}: {running} -> {wanted} skips a minor; upgrade one minor at a time: "
                f"1.{old[1] + 1}.x first")
    return None
