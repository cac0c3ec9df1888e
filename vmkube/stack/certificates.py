"""The cluster's certificates as the program sees them: the renewal policy the bootstrap
gets, the `certificates` output (name -> end date, nothing secret), and a warning
for a CA that nears its end."""

from __future__ import annotations

import os
from typing import Any, Mapping

import pulumi

from vmkube import config, pki
from vmkube.contracts import PkiPolicy

# Internal, for tests: new leaf certificates last this many seconds instead of two years,
# so a test can watch `up` renew them. Read per run (one `up` with it, the next without).
LEAF_LIFETIME_ENV = "VMKUBE_TEST_LEAF_LIFETIME_SECONDS"
MIN_LEAF_SECONDS = 60


def pki_policy(spec: config.ClusterSpec, env: Mapping[str, str] = os.environ) -> PkiPolicy:
    raw = env.get(LEAF_LIFETIME_ENV, "").strip()
    seconds = 0
    if raw:
        if not raw.isdigit() or int(raw) < MIN_LEAF_SECONDS:
            raise pulumi.RunError(f"{LEAF_LIFETIME_ENV}: must be a whole number of seconds, at least "
                                  f"{MIN_LEAF_SECONDS} (got {raw!r})")
        seconds = int(raw)
        pulumi.log.warn(f"cluster {spec.name}: new leaf certificates last {seconds} s ({LEAF_LIFETIME_ENV} is set)")
    return PkiPolicy(renew_before_days=spec.pki.renew_before_days, leaf_lifetime_seconds=seconds)


def expiry_list(entries: Mapping[str, Any] | None, cluster: str) -> dict[str, str]:
    """Certificate name -> notAfter (UTC) from the bootstrap's ``pki`` output; warns about
    each CA within a year of its end. Only the public halves are read."""
    public = {name: entry["cert"] for name, entry in (entries or {}).items()
              if isinstance(entry, Mapping) and isinstance(entry.get("cert"), str)}
    for line in pki.ca_warnings(public):
        pulumi.log.warn(f"cluster {cluster}: {line}")
    return pki.expiries(public)


def certificates_output(pki_output: pulumi.Output[Any], cluster: str) -> pulumi.Output[dict[str, str]]:
    """Dates only, so not secret, though they are read from the secret ``pki`` output."""
    return pulumi.Output.unsecret(pki_output.apply(lambda entries: expiry_list(entries, cluster)))
