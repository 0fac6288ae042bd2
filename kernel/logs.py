"""Logs with a request id, and one access line per request that never holds a secret.

Two renderings of one record, chosen by ``configure`` (``BATON_LOG_FORMAT``):

- ``json``: one JSON object per line (``ts``, ``level``, ``logger``, ``msg``, then the extras),
  for collectors; the default when stderr is not a terminal.
- ``text``: one readable line per record (local time, level, logger, short request id, message,
  then ``key=value`` extras), coloured on a terminal; the default when stderr is one.

Both render the same fields (``_fields``), so what is kept out of one is kept out of the other.
Text lines escape control characters: a value cannot forge a second line or drive the terminal.

The access line names the route *template* (``/s/{token}``), never the raw path: status-link
tokens, references and phone numbers stay out of the logs. Uvicorn's own access log (raw paths)
is turned off by ``baton serve``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import os
import secrets
import sys
import time
from typing import Any, TextIO

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_RESERVED = set(vars(logging.makeLogRecord({})))


_base_factory = logging.getLogRecordFactory()


def _record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    # Stamp the request id when the record is made: it may be formatted later, out of context.
    record = _base_factory(*args, **kwargs)
    record.request_id = request_id.get()
    return record


if getattr(logging.getLogRecordFactory(), "__name__", "") != "_record_factory":
    logging.setLogRecordFactory(_record_factory)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The extras a record carries (``extra={...}`` and the request id), in the order given."""
    return {
        key: value for key, value in vars(record).items()
        if key not in _RESERVED and key not in _HINTS and not key.startswith("_") and value is not None
    }


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_BARE = re.compile(r"^[^\s\"=]+$")
_COLOURS = {"DEBUG": "2", "INFO": "32", "WARNING": "33", "ERROR": "31", "CRITICAL": "1;31"}
SHORT_ID = 8  # characters of the request id shown on a text line: enough to follow one request
_HINTS = ("color_message",)  # uvicorn's colourised copy of the message: a hint for its own formatter, not data


def _escaped(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _value(value: Any) -> str:
    """A bare word when it is one, else JSON (quoted strings, objects); control characters escaped."""
    if isinstance(value, (dict, list, tuple)):
        return _escaped(json.dumps(value, default=str, ensure_ascii=False))
    text = value if isinstance(value, str) else str(value)
    return _escaped(text if _BARE.match(text) else json.dumps(text, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """``12:00:01.234 INFO  baton.access [3fa9c2d1] request method=GET route=/healthz status=200``."""

    def __init__(self, *, colour: bool = False) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        rid = fields.pop("request_id", None)
        level = f"{record.levelname:<5}"
        if self.colour:
            level = f"\x1b[{_COLOURS.get(record.levelname, '0')}m{level}\x1b[0m"
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        parts = [stamp, level, record.name]
        if rid is not None:
            parts.append(f"[{_escaped(str(rid))[:SHORT_ID]}]")
        parts.append(_escaped(record.getMessage()))
        parts += [f"{_escaped(key)}={_value(value)}" for key, value in fields.items()]
        line = " ".join(parts)
        if record.exc_info:
            # The traceback keeps its own lines, indented under the record; nothing else may break one.
            trace = self.formatException(record.exc_info)
            line += "".join(f"\n    {_escaped(row)}" for row in trace.splitlines())
        return line


def formatter_for(log_format: str, stream: TextIO) -> logging.Formatter:
    """``json``, ``text``, or ``auto``: text on a terminal, JSON otherwise (files, pipes, collectors)."""
    terminal = _isatty(stream)
    if log_format == "json" or (log_format == "auto" and not terminal):
        return JSONFormatter()
    return TextFormatter(colour=terminal and not os.environ.get("NO_COLOR"))


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


# Libraries that log SQL with its parameters and result rows (sqlalchemy, aiosqlite), request lines
# with URLs and headers (httpx, urllib3, twilio) or protocol traffic at DEBUG and INFO: at Baton's
# DEBUG they would write customers' phone numbers, status-link tokens and key secrets to the logs.
# They keep WARNING and above whatever Baton's level. Alembic too: at INFO it announces each of its
# plugins and each migration step; ``baton migrate`` says in one line what it did instead.
QUIET_LIBRARIES = (
    "sqlalchemy", "aiosqlite", "asyncpg", "psycopg", "httpx", "httpcore", "urllib3", "requests", "twilio",
    "aiosmtplib", "multipart", "python_multipart", "h11", "h2", "hpack", "websockets", "watchfiles", "asyncio",
    "alembic",
)


def configure(level: str = "INFO", *, log_format: str = "auto", stream: TextIO | None = None) -> None:
    """Send every log record to ``stream`` (stderr) in ``log_format``, at ``level`` and above."""
    stream = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter_for(log_format, stream))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    quiet = max(logging.WARNING, root.level)
    for library in QUIET_LIBRARIES:
        logging.getLogger(library).setLevel(quiet)
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def new_request_id(incoming: str | None) -> str:
    return incoming if incoming and _SAFE_ID.match(incoming) else secrets.token_hex(8)
