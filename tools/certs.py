"""`make certs STACK=…`: each certificate of a stack's cluster with its end date, from the
stack's ``certificates`` output (dates only: no key or certificate leaves the state).

A leaf within ``vmkube:pki.renewBeforeDays`` (default 90) of its end is marked: the next
`make up` issues it again and restarts what reads it, one node at a time. A CA is never
renewed by `up`; one within a year of its end is marked too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Mapping

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.stackaccess import config_value, pulumi  # noqa: E402
from vmkube import pki  # noqa: E402
from vmkube.bootstrap.plan import CAS  # noqa: E402
from vmkube.config import PkiSpec  # noqa: E402

STAMP = "%Y-%m-%dT%H:%M:%SZ"


def rows(listed: Mapping[str, str], renew_before_days: int, now: dt.datetime) -> list[str]:
    """One line per certificate, soonest end first: name, end, what is left, and what `up` does about it."""
    def end(name: str) -> dt.datetime:
        return dt.datetime.strptime(listed[name], STAMP).replace(tzinfo=dt.timezone.utc)
    width = max((len(n) for n in listed), default=0)
    out = []
    for name in sorted(listed, key=lambda n: (end(n), n)):
        left = end(name) - now
        if name in CAS:
            note = "CA: expired" if left.total_seconds() <= 0 else (
                "CA: within a year of its end, plan a CA rotation (up never renews a CA)"
                if left < pki.CA_WARN_AHEAD else "CA")
        else:
            note = "renewed by the next up" if left < dt.timedelta(days=renew_before_days) else ""
        out.append(f"  {name:<{width}}  {listed[name]}  {_left(left):>10}  {note}".rstrip())
    return out


def _left(left: dt.timedelta) -> str:
    seconds = int(left.total_seconds())
    if seconds <= 0:
        return "expired"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400} days"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tools/certs.py", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="local")
    args = parser.parse_args(argv)
    out = json.loads(pulumi(args.stack, "stack", "output", "--json") or "{}")
    listed = out.get("certificates")
    if not listed:
        print(f"stack {args.stack} lists no certificates: it has no Kubernetes, or its last `make up` "
              "predates the list (run `make up` once)")
        return 0
    days = int(config_value(args.stack, "vmkube:pki.renewBeforeDays", str(PkiSpec.renew_before_days)))
    print(f"{len(listed)} certificates of stack {args.stack}, soonest end first "
          f"(leaves are renewed within {days} days of their end):")
    print("\n".join(rows(listed, days, dt.datetime.now(dt.timezone.utc))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
