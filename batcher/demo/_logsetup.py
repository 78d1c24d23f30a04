"""Logging set-up shared by the demo's parent and instance processes."""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging"]


def configure_logging(level: int, process_label: str) -> None:
    """Send log records at ``level`` and above to stderr, tagged with the process.

    The Azure SDK logs every HTTP request at INFO, so its loggers stay at
    WARNING unless ``level`` is DEBUG.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            f"%(asctime)s {process_label} %(levelname)s %(name)s: %(message)s"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("azure").setLevel(
        level if level <= logging.DEBUG else max(level, logging.WARNING)
    )
