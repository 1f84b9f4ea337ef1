"""Logging set-up for the CLI and the server: plain text for people, JSON lines for collectors.

Fields passed with ``extra=`` (the server's access lines carry ``request_id``, ``method``,
``path``, ``model``, ``status``, ``duration_ms``) become top-level keys of each JSON line, so log
pipelines (Loki, Elasticsearch, Cloud Logging) can filter on them without parsing messages.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from typing import Any

from .errors import ConfigError

LOG_FORMATS = ("text", "json")
#: Default format when ``--log-format`` is not given.
LOG_FORMAT_ENV = "MODELDEPLOY_LOG_FORMAT"
#: The server writes one line per HTTP request to this logger, at INFO.
ACCESS_LOGGER = "modeldeploy.access"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the ``extra`` fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def default_log_format() -> str:
    return os.environ.get(LOG_FORMAT_ENV) or "text"


def configure_logging(level: str = "WARNING", log_format: str = "text") -> None:
    """Send logs to stderr in ``log_format``. Access lines stay visible unless ``level`` is
    ERROR or stricter, so a server started with the default level still logs its requests."""
    if log_format not in LOG_FORMATS:
        raise ConfigError(
            f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r} (--log-format or ${LOG_FORMAT_ENV})"
        )
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    root_level = logging.getLogger().level
    logging.getLogger(ACCESS_LOGGER).setLevel(min(root_level, logging.INFO) if root_level < logging.ERROR else root_level)
