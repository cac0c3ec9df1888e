"""Work on many nodes, at once or one at a time; failures reported together, each under its node.

A vmkube error (the user's to fix: a node unreachable, a refused key) becomes one
line of NodesFailed. Anything else is a bug: it is logged with its traceback under
the node it happened on and raised as it is, frames intact, for the report.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from vmkube.errors import NodesFailed, VmkubeError

log = logging.getLogger("vmkube.parallel")
MAX_PARALLEL = 32


def _why(name: str, exc: VmkubeError) -> str:
    return str(exc).removeprefix(f"{name}: ")


def fan_out(names: list[str], work: Callable[[str], object], action: str) -> dict[str, object]:
    """Runs work(name) for every name at once; raises one error naming each failed node."""
    results: dict[str, object] = {}
    failures: dict[str, str] = {}
    bugs: list[BaseException] = []
    if not names:
        return results
    with ThreadPoolExecutor(max_workers=min(len(names), MAX_PARALLEL)) as ex:
        futures = {name: ex.submit(work, name) for name in names}
        for name, fut in futures.items():
            try:
                results[name] = fut.result()
            except VmkubeError as exc:
                failures[name] = _why(name, exc)
            except Exception as exc:  # noqa: BLE001 - a bug: logged under its node, then raised as is
                log.error("%s: %s failed with an unexpected error", name, action, exc_info=exc)
                bugs.append(exc)
    if bugs:
        raise bugs[0]
    if failures:
        raise NodesFailed(action, failures, len(names))
    return results


def one_by_one(names: list[str], work: Callable[[str], object], action: str) -> dict[str, object]:
    """Runs work(name) for each name in turn and stops at the first failure: the
    nodes after it are left as they were (a rolling restart must not go on)."""
    results: dict[str, object] = {}
    for name in names:
        try:
            results[name] = work(name)
        except VmkubeError as exc:
            raise NodesFailed(action, {name: _why(name, exc)}, len(names)) from None
    return results
