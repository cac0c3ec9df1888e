"""The engine's unknown values, as the plain core spells them (vmkube.contracts.UNKNOWN).

During a preview, check and diff receive pulumi's own Unknown objects wherever an
input waits on another resource's pending change; the contracts read UNKNOWN.
"""

from __future__ import annotations

from typing import Any

from pulumi.output import Unknown

from vmkube.contracts import UNKNOWN


def marked(value: Any) -> Any:
    """``value`` with every pulumi Unknown, however deep, replaced by UNKNOWN."""
    if isinstance(value, Unknown):
        return UNKNOWN
    if isinstance(value, dict):
        return {k: marked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [marked(v) for v in value]
    return value
