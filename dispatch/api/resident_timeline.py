"""`GET /api/v1/residents/{id}/timeline`: the resident's calls, placed calls, alarms, alerts, orders
and SMS as one list, a page at a time (`next` is the cursor of the page's last entry)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dispatch.api.auth import current_user
from dispatch.api.errors import bad_request, not_found, ok
from dispatch.api.keys import RUNTIME
from dispatch.api.openapi import error_response
from dispatch.api.paging import DEFAULT_LIMIT, MAX_LIMIT, time_param
from dispatch.resident_timeline import (
    LINKS,
    SOURCES,
    BadCursor,
    TimelineCursor,
    resident_phones,
    resident_timeline,
)

routes = web.RouteTableDef()

ORDERS = ("newest", "oldest")


@routes.get(r"/api/v1/residents/{id:\d+}/timeline")
async def timeline_of_resident(request: web.Request) -> web.Response:
    current_user(request)
    runtime = request.app[RUNTIME]
    raw = request.match_info["id"]
    if len(raw) > 18:
        raise not_found("resident")
    query = request.query
    since, until = time_param(query, "since"), time_param(query, "until")
    limit_raw = query.get("limit", "")
    if limit_raw and not (limit_raw.isascii() and limit_raw.isdigit() and 1 <= int(limit_raw) <= MAX_LIMIT):
        raise bad_request("limit", f"expected a whole number from 1 to {MAX_LIMIT}")
    limit = int(limit_raw) if limit_raw else DEFAULT_LIMIT
    order = query.get("order") or "newest"
    if order not in ORDERS:
        raise bad_request("order", "expected newest or oldest")
    after = None
    if query.get("after"):
        try:
            after = TimelineCursor.decode(query["after"])
        except BadCursor:
            raise bad_request("after", "expected the `next` of a previous page") from None
    async with runtime.pool.acquire() as conn:
        phones = await resident_phones(conn, int(raw))
        if phones is None:
            raise not_found("resident")
        entries = await resident_timeline(
            conn,
            int(raw),
            phones,
            since=since,
            until=until,
            after=after,
            newest_first=order == "newest",
            limit=limit,
        )
    return ok(
        {
            "resident_id": int(raw),
            "order": order,
            "items": [e.as_json() for e in entries],
            "next": entries[-1].cursor.encode() if len(entries) == limit else None,
        }
    )


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": schema}


SCHEMAS: dict[str, Any] = {
    "ResidentTimelineEntry": {
        "type": "object",
        "required": ["at", "kind", "source", "subject_type", "subject_id", "summary", "data"],
        "properties": {
            "at": {"type": "string", "format": "date-time"},
            "kind": {
                "type": "string",
                "description": "call, call_attempt, alarm, sms, or the event's kind (order.accepted, "
                "alert.raised, ...)",
            },
            "source": {"type": "string", "enum": list(SOURCES)},
            "actor": {"type": "string"},
            "from": {"type": ["string", "null"]},
            "to": {"type": ["string", "null"], "description": "the state reached, or the call's disposition"},
            "reason": {"type": "string"},
            "data": {"type": "object"},
            "subject_type": {"type": "string", "description": "call, call_attempt, alarm, alert, order, sms"},
            "subject_id": {"type": "integer"},
            "link": {
                "type": ["string", "null"],
                "description": "the subject in this API: " + ", ".join(LINKS.values()),
            },
            "summary": {
                "type": "object",
                "required": ["zh", "en"],
                "properties": {"zh": {"type": "string"}, "en": {"type": "string"}},
            },
        },
    },
}

OPENAPI: dict[str, Any] = {
    "/api/v1/residents/{id}/timeline": {
        "get": {
            "summary": "A resident's calls, care calls, alarms, alerts and orders (every transition) and "
            "SMS to or from the resident and the emergency contacts, as one list",
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}},
                _query(
                    "since", "at or after (ISO 8601 with offset)", {"type": "string", "format": "date-time"}
                ),
                _query("until", "before (ISO 8601 with offset)", {"type": "string", "format": "date-time"}),
                _query(
                    "limit",
                    "page size",
                    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
                ),
                _query("after", "the `next` of the previous page", {"type": "string", "maxLength": 60}),
                _query(
                    "order",
                    "newest first (default) or oldest first",
                    {"type": "string", "enum": list(ORDERS)},
                ),
            ],
            "responses": {
                "200": {
                    "description": "one page",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["resident_id", "items", "next"],
                                "properties": {
                                    "resident_id": {"type": "integer"},
                                    "order": {"type": "string", "enum": list(ORDERS)},
                                    "items": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/ResidentTimelineEntry"},
                                    },
                                    "next": {
                                        "type": ["string", "null"],
                                        "description": "pass as `after` for the next page",
                                    },
                                },
                            }
                        }
                    },
                },
                "400": error_response("a bad parameter"),
                "401": error_response("no or bad token"),
                "404": error_response("no such resident"),
            },
        }
    }
}
