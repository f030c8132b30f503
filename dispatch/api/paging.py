"""Query parameters every list endpoint shares: `limit`/`offset` paging and short text filters."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from dispatch.api.errors import bad_request

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# Past this an offset is a mistake or a scraper; keyset paging would be the answer, not a bigger number.
MAX_OFFSET = 1_000_000
MAX_TEXT = 100


def _integer(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise bad_request(name, f"expected a whole number from {low} to {high}, got {raw[:20]!r}")
    return int(text)


def page_params(query: Mapping[str, str]) -> tuple[int, int]:
    """(limit, offset) from the query, or a 400 naming the bad one."""
    limit = _integer(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _integer(query, "offset", 0, 0, MAX_OFFSET)
    return limit, offset


def query_text(query: Mapping[str, str], name: str) -> str | None:
    """A free-text filter, None when absent or blank; 400 when it is too long to be a search."""
    raw = query.get(name, "").strip()
    if len(raw) > MAX_TEXT:
        raise bad_request(name, f"at most {MAX_TEXT} characters")
    if not raw.isprintable():
        raise bad_request(name, "control characters are not allowed")
    return raw or None


def page(items: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
    return {"items": items, "total": total, "limit": limit, "offset": offset}


PAGING_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "limit",
        "in": "query",
        "description": f"page size (default {DEFAULT_LIMIT})",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    },
    {
        "name": "offset",
        "in": "query",
        "description": "how many matches to skip",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
    },
]


def text_parameter(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": "string", "maxLength": MAX_TEXT},
    }


def page_schema(item_schema: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "total", "limit", "offset"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{item_schema}"}},
            "total": {"type": "integer", "minimum": 0, "description": "matches in all, not only this page"},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
        },
    }


def time_param(query: Mapping[str, str], name: str = "since") -> dt.datetime | None:
    """An ISO 8601 time with its UTC offset (2026-11-23T08:00:00+08:00), None when absent."""
    raw = query.get(name)
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise bad_request(name, "expected an ISO 8601 time such as 2026-11-23T08:00:00+08:00") from None
    if value.tzinfo is None:
        raise bad_request(name, "the time needs a UTC offset, e.g. +08:00")
    try:
        # 0001-01-01T00:00+01:00 is a valid string but no instant a database can hold.
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise bad_request(name, "the time is out of range") from None


# Days far outside these are typing mistakes, and day + 1 must still be a date.
FIRST_DAY = dt.date(2000, 1, 1)
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
LAST_DAY = dt.date(2100, 12, 31)


def day_param(query: Mapping[str, str], today: dt.date, name: str = "day") -> dt.date:
    """A local calendar day (2026-11-23), `today` when absent."""
    raw = query.get(name)
    if not raw:
        return today
    try:
        value = dt.date.fromisoformat(raw) if _DAY.fullmatch(raw) else None
    except ValueError:
        value = None
    if value is None:
        raise bad_request(name, "expected a day such as 2026-11-23")
    if not FIRST_DAY <= value <= LAST_DAY:
        raise bad_request(name, f"expected a day from {FIRST_DAY} to {LAST_DAY}")
    return value


def day_parameter(description: str) -> dict[str, Any]:
    return {
        "name": "day",
        "in": "query",
        "description": description,
        "schema": {"type": "string", "format": "date"},
    }
