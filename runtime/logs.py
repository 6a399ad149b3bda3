"""Structured logs on top of the standard library.

Every log line is an event name plus key/value fields (``log.info("restart",
actor="whale", delay=0.4)``), rendered as ``key=value`` for people or as one
JSON object per line for machines (``--log-format json``). Staying on stdlib
logging means pytest's caplog, handlers and levels all keep working.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class StructLogger:
    """A logger with bound context fields; cheap to copy with `bind`."""

    __slots__ = ("_context", "_logger")

    def __init__(self, logger: logging.Logger, context: dict[str, Any] | None = None) -> None:
        self._logger = logger
        self._context = context or {}

    @property
    def name(self) -> str:
        return self._logger.name

    def bind(self, **fields: Any) -> StructLogger:
        return StructLogger(self._logger, {**self._context, **fields})

    def _log(self, level: int, event: str, fields: dict[str, Any], exc_info: bool = False) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(
                level, event, extra={"fields": {**self._context, **fields}}, exc_info=exc_info, stacklevel=3
            )

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields, exc_info=True)


def get_logger(name: str, **context: Any) -> StructLogger:
    """A StructLogger under the ``sniper.`` namespace."""
    full = name if name.startswith("sniper") else f"sniper.{name}"
    return StructLogger(logging.getLogger(full), context)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = dict(getattr(record, "fields", {}) or {})
    for key, value in record.__dict__.items():
        if key not in _RESERVED and key != "fields":
            fields.setdefault(key, value)
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        out.update(_fields(record))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class ConsoleFormatter(logging.Formatter):
    """``HH:MM:SS level logger event key=value ...`` for people."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        parts = [stamp, f"{record.levelname.lower():7}", record.name, record.getMessage()]
        parts += [f"{k}={v}" for k, v in _fields(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: str = "info", fmt: str = "console", stream: TextIO | None = None) -> None:
    """Install one handler on the ``sniper`` logger (idempotent)."""
    root = logging.getLogger("sniper")
    for handler in list(root.handlers):
        if getattr(handler, "_sniper", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    handler._sniper = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
