"""vmkube's errors as Pulumi shows them from a dynamic provider: the message alone.

Pulumi's dynamic provider host reports whatever a provider raises as
traceback.format_exc() (pulumi.dynamic's wrapper around each call): a page of
Python frames, of which the progress view shows only the first line, "Traceback
(most recent call last):". vmkube's errors already name the node or config key and
give a hint, so in that process they are formatted as their message. Anything else
keeps its traceback: it is a bug, and the frames are what a report needs.
"""

from __future__ import annotations

import sys
import traceback

from vmkube.errors import VmkubeError

_format_exc = traceback.format_exc
PROVIDER_HOST = "pulumi.dynamic.__main__"


def _format(limit: int | None = None, chain: bool = True) -> str:
    exc = sys.exc_info()[1]
    if isinstance(exc, VmkubeError):
        return str(exc)
    return _format_exc(limit, chain)


def install() -> None:
    """In the dynamic provider host only; the program's own errors are Pulumi RunErrors."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name == PROVIDER_HOST:
        traceback.format_exc = _format
