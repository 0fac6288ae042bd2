"""A JSON answer's bytes, rendered once: the same bytes are sent and, for an ``Idempotency-Key``, stored."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from pydantic import BaseModel


def render_json(result: Any) -> bytes:
    """A Pydantic model by its aliases; plain data with times as ISO 8601 in UTC ("Z")."""
    if isinstance(result, BaseModel):
        return result.model_dump_json(by_alias=True).encode()
    return json.dumps(_plain(result), separators=(",", ":")).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    return value
