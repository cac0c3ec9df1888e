"""The one way vmkube waits: probe until ready or a deadline, then fail naming what it waited for."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

from vmkube.errors import VmkubeError

T = TypeVar("T")


class WaitTimedOut(VmkubeError):
    """Something did not get ready in time; the message names it and its last state."""


def wait_for(what: str, probe: Callable[[], tuple[bool, T]], *, timeout: float, interval: float = 5.0,
             error: type[VmkubeError] = WaitTimedOut) -> T:
    """Calls probe() -> (ready, detail) until ready; returns the detail then. At the
    deadline raises ``error`` naming ``what`` and the last detail (when it is text)."""
    deadline = time.monotonic() + timeout
    while True:
        ready, detail = probe()
        if ready:
            return detail
        if time.monotonic() >= deadline:
            last = f": {str(detail).strip()[-300:]}" if isinstance(detail, str) and detail.strip() else ""
            raise error(f"{what} not ready within {timeout:.0f}s{last}")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
