"""The one logging setup of every Atelier process: the agent, the hub, its ingest workers, the demo.

Text by default, one readable line per record; `json` writes one JSON object per line for
journald's and log shippers' parsers (`--log-format json` or `ATELIER_LOG_FORMAT=json`). The
module is standard library only and lives in `edge/` because the agent must not import the hub,
while the hub may import this (docs/decisions.md).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
FORMAT_ENV = "ATELIER_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What every LogRecord has; anything else on a record came from `extra=` and is data.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to `sys.stderr` as it is when a record comes, not as it was at setup: a command
    run in-process (a test's CliRunner) swaps the stream and closes it afterwards."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


class LogSetupError(ValueError):
    """A log level or format nobody can use; the message names the option and the choices."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: time (UTC, ISO-8601), level, logger, message,
    the exception if any, and the record's `extra=` fields as they are (or their repr)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = value
        # ASCII escapes: a lone surrogate or an odd byte in a message still makes a line any
        # parser reads, whatever the encoding of the stream.
        return json.dumps(entry, default=repr)


def log_format(given: str | None = None) -> str:
    """The format asked for: the option, else ATELIER_LOG_FORMAT, else text."""
    chosen = (given or os.environ.get(FORMAT_ENV) or "text").strip().lower()
    if chosen not in LOG_FORMATS:
        source = "--log-format" if given else FORMAT_ENV
        raise LogSetupError(f"{source} {chosen!r}: give one of {', '.join(LOG_FORMATS)}")
    return chosen


def setup_logging(level: str = "info", fmt: str | None = None, *, quiet: Iterable[str] = ()) -> str:
    """Configure the root logger once for this process; returns the format in use.

    `quiet` loggers (chatty libraries) are held at WARNING. Calling it again replaces the
    handler, so a test or a second entry point never doubles every line.
    """
    if level.lower() not in LOG_LEVELS:
        raise LogSetupError(f"--log-level {level!r}: give one of {', '.join(LOG_LEVELS)}")
    chosen = log_format(fmt)
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if chosen == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_atelier", False)]:
        root.removeHandler(old)
    handler._atelier = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    return chosen
