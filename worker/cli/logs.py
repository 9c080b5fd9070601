"""``wq worker``'s log lines: text for people, or JSON lines for log shippers.

A JSON line is one object per record: ``ts`` (ISO 8601, UTC), ``level``, ``logger``,
``message``, ``exc_info`` (the formatted traceback, when there is one), and each of
:data:`EXTRA_FIELDS` the record carries (set with ``log.info(..., extra={...})``).
Hand-written: twenty lines do not need a dependency.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Record attributes a JSON line carries when a log call set them through ``extra=``.
EXTRA_FIELDS = (
    "task_id",
    "kind",
    "attempt",
    "max_attempts",
    "error",
    "event",
    "worker_id",
    "queue",
    "delay_s",
    "counts",
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exc_info"] = record.exc_text
        for name in EXTRA_FIELDS:
            if name in record.__dict__:
                document[name] = record.__dict__[name]
        return json.dumps(document, ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: LogFormat) -> None:
    """Log records at ``level`` and above to stderr, as text lines or JSON lines."""
    handler = logging.StreamHandler()
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)
