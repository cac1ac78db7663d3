"""Logging: JSON lines through structlog, every line scrubbed of secrets before it is written.

Library code logs with the standard ``logging`` module (silent unless the host configures it);
the CLI and the service call ``configure_logging`` at their edge, which renders those records
through structlog with the scrubbing processor last before the renderer, so no secret that is
registered (``scrub.register_secrets``), nor any credential-like field, reaches a log line.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

from callout.scrub import structlog_processor

__all__ = ["configure_logging"]


def configure_logging(*, level: str = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """Send the ``callout`` loggers to ``stream`` (stderr) as scrubbed JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(),
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog_processor(),
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    logger = logging.getLogger("callout")
    logger.handlers = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
    return handler
