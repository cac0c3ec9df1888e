"""The engine shows a provider's stderr lines in `pulumi up`: vmkube's log goes there."""

from __future__ import annotations

import logging
import sys


def show_progress() -> None:
    logger = logging.getLogger("vmkube")
    if not any(getattr(h, "vmkube", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.vmkube = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    # paramiko's own INFO lines say nothing a user needs.
    logging.getLogger("paramiko").setLevel(logging.WARNING)
