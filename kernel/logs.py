"""Structured JSON logs with a request id, and one access line per request that never holds a secret.

The access line names the route *template* (``/s/{token}``), never the raw path: status-link
tokens, references and phone numbers stay out of the logs. Uvicorn's own access log (raw paths)
is turned off by ``baton serve``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
import time
from typing import Any

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


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_") and value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


# Libraries that log SQL with its parameters and result rows (sqlalchemy, aiosqlite), request lines
# with URLs and headers (httpx, urllib3, twilio) or protocol traffic at DEBUG and INFO: at Baton's
# DEBUG they would write customers' phone numbers, status-link tokens and key secrets to the logs.
# They keep WARNING and above whatever Baton's level.
QUIET_LIBRARIES = (
    "sqlalchemy", "aiosqlite", "asyncpg", "psycopg", "httpx", "httpcore", "urllib3", "requests", "twilio",
    "aiosmtplib", "multipart", "python_multipart", "h11", "h2", "hpack", "websockets", "watchfiles", "asyncio",
)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter())
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
