"""Lists answer one page at a time: ``{"items": [...], "next_cursor": "..." | null}``.

One cursor format for every list: the position after the page's last item (an id, a sequence
number or an offset, whatever the list is ordered by) as a non-negative integer, base64url
encoded so that clients treat it as opaque and pass it back unchanged.
"""

from __future__ import annotations

import base64
from typing import Generic, TypeVar

from pydantic import BaseModel

from kernel.errors import Unprocessable

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list; subclass it to name the list in the OpenAPI document (``class CaseList(Page[CaseOut])``)."""

    items: list[T]
    next_cursor: str | None = None


def encode_cursor(value: int) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The position a cursor names; None for the first page; 422 for anything not made by ``encode_cursor``."""
    if not cursor:
        return None
    try:
        value = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, UnicodeDecodeError):
        value = -1
    if not 0 <= value < 2**63:
        raise Unprocessable("Invalid cursor; pass next_cursor from the previous page unchanged.")
    return value
