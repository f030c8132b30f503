"""Reading JSON request bodies: a 400 naming the field for anything that is not what was expected."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, TypeVar

from aiohttp import web

from dispatch.api.errors import bad_request
from dispatch.api.paging import time_param

E = TypeVar("E", bound=StrEnum)
MAX_TEXT = 2000


async def json_object(request: web.Request, *, empty_ok: bool = True) -> dict[str, Any]:
    """The body as a JSON object; an empty body is `{}` when the action needs no fields."""
    raw = await request.read()
    if not raw.strip() and empty_ok:
        return {}
    return parse_json_object(raw)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object from raw bytes (signed requests parse what they verified), or a 400."""
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        # RecursionError: a body nested thousands deep is an attack or a bug, not a request.
        raise bad_request("body", "expected a JSON object") from None
    if not isinstance(payload, dict):
        raise bad_request("body", "expected a JSON object")
    return payload


def storable_text(value: str) -> bool:
    """Text PostgreSQL can store: JSON escapes can spell NUL and half a surrogate pair, and
    json.loads lets both through to a driver error (a 500) later."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable(value: str) -> str:
    """`value` as PostgreSQL can store it, for text that must be kept rather than refused (an SMS
    reply from a phone): a NUL or half a surrogate pair becomes a replacement character."""
    if storable_text(value):
        return value
    return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def text_field(
    body: Mapping[str, Any], name: str, *, required: bool = False, max_length: int = MAX_TEXT
) -> str:
    value = body.get(name)
    if value is None:
        if required:
            raise bad_request(name, "is required")
        return ""
    if not isinstance(value, str) or len(value) > max_length:
        raise bad_request(name, f"expected text of at most {max_length} characters")
    if not storable_text(value):
        raise bad_request(name, "text may not hold a NUL character or a lone surrogate")
    if required and not value.strip():
        raise bad_request(name, "is required")
    return value.strip()


def int_field(body: Mapping[str, Any], name: str, *, required: bool = False) -> int | None:
    value = body.get(name)
    if value is None:
        if required:
            raise bad_request(name, "is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**63 - 1:
        raise bad_request(name, "expected a positive whole number")
    return int(value)


def bool_field(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise bad_request(name, "expected true or false")
    return value


def choice_field(body: Mapping[str, Any], name: str, enum: type[E], *, default: E | None = None) -> E:
    value = body.get(name)
    if value is None and default is not None:
        return default
    try:
        return enum(str(value))
    except ValueError:
        raise bad_request(name, f"expected one of {', '.join(e.value for e in enum)}") from None


def time_field(body: Mapping[str, Any], name: str, *, required: bool = False) -> dt.datetime | None:
    """An ISO 8601 time with its UTC offset, as an instant in UTC; None when absent and optional."""
    raw = body.get(name)
    if raw is None:
        if required:
            raise bad_request(name, "is required")
        return None
    if not isinstance(raw, str):
        raise bad_request(name, "expected an ISO 8601 time such as 2026-11-23T08:00:00+08:00")
    value = time_param({name: raw}, name)
    if value is None:  # an empty string
        raise bad_request(name, "expected an ISO 8601 time such as 2026-11-23T08:00:00+08:00")
    return value
