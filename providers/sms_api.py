"""`/api/v1/sms`: the messages in and out, and typing a reply in the development outbox."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from dispatch.api.auth import current_user
from dispatch.api.bodies import json_object
from dispatch.api.errors import ApiError, bad_request, ok
from dispatch.api.keys import RUNTIME
from dispatch.api.openapi import error_response
from dispatch.api.paging import time_param
from dispatch.phones import PhoneNumberError
from providers.inbound import route_reply

routes = web.RouteTableDef()

DIRECTIONS = ("in", "out")
STATUSES = ("queued", "sending", "sent", "delivered", "failed", "undelivered", "received")
MAX_LIMIT = 200

LIST_SMS = """
SELECT id, direction, to_e164, from_e164, body, segments, status, purpose, language, provider_sid,
       attempts, next_attempt_at, last_error, error_code, context_id, subject_type, subject_id, job_id,
       outcome, flagged, flag_reason, created_at, sent_at, updated_at
FROM sms_messages
WHERE ($1::text IS NULL OR direction = $1)
  AND ($2::text IS NULL OR status = $2)
  AND ($3::timestamptz IS NULL OR created_at >= $3)
  AND ($4::text IS NULL OR to_e164 = $4 OR from_e164 = $4)
  AND ($5::bigint IS NULL OR id < $5)
ORDER BY id DESC
LIMIT $6
"""


def _message(row: asyncpg.Record) -> dict[str, Any]:
    item = dict(row.items())
    item["to"] = item.pop("to_e164")
    item["from"] = item.pop("from_e164")
    for key in ("next_attempt_at", "created_at", "sent_at", "updated_at"):
        if item[key] is not None:
            item[key] = item[key].isoformat()
    if item["context_id"] is not None:
        item["context_id"] = str(item["context_id"])
    return item


def _choice(request: web.Request, name: str, options: tuple[str, ...]) -> str | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    if value not in options:
        raise bad_request(name, f"expected one of {', '.join(options)}")
    return value


def _int(request: web.Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise bad_request(name, f"expected an integer {low}-{high}")
    return int(raw)


@routes.get("/api/v1/sms")
async def list_sms(request: web.Request) -> web.Response:
    current_user(request)
    runtime = request.app[RUNTIME]
    direction = _choice(request, "direction", DIRECTIONS)
    status = _choice(request, "status", STATUSES)
    since = time_param(request.query)
    phone = None
    if request.query.get("phone"):
        try:
            phone = runtime.phones.normalise(request.query["phone"])
        except PhoneNumberError as exc:
            raise bad_request("phone", str(exc)) from None
    limit = _int(request, "limit", 50, 1, MAX_LIMIT)
    before = _int(request, "before", None, 1, 2**63 - 1)
    async with runtime.pool.acquire() as conn:
        rows = await conn.fetch(LIST_SMS, direction, status, since, phone, before, limit)
    items = [_message(r) for r in rows]
    next_before = items[-1]["id"] if limit is not None and len(items) == limit else None
    backend = "twilio" if runtime.config.sms.twilio_enabled else "outbox"
    return ok({"items": items, "next_before": next_before, "backend": backend})


@routes.post("/api/v1/sms/outbox/reply")
async def outbox_reply(request: web.Request) -> web.Response:
    """A reply typed on the console, taking the same path as one that came through Twilio."""
    current_user(request)
    runtime = request.app[RUNTIME]
    if runtime.config.sms.twilio_enabled:
        raise ApiError(409, "not_outbox", "SMS goes through Twilio here; replies come from real phones")
    payload = await json_object(request, empty_ok=False)
    sender, text = payload.get("from"), payload.get("body")
    if not isinstance(sender, str) or not sender.strip():
        raise bad_request("from", "expected the sender's phone number")
    if not isinstance(text, str) or not 1 <= len(text) <= 1600:
        raise bad_request("body", "expected the text of the SMS, 1-1600 characters")
    try:
        e164 = runtime.phones.normalise(sender)
    except PhoneNumberError as exc:
        raise bad_request("from", str(exc)) from None
    result = await route_reply(runtime, from_raw=e164, body=text, to_raw="")
    return ok(
        {
            "message_id": result.message_id,
            "outcome": result.outcome.value,
            "job_id": result.job_id,
            "action": result.action.value if result.action else None,
            "reply_ids": list(result.reply_ids),
        },
        status=201,
    )


_NULLABLE_STRING = {"type": ["string", "null"]}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}

SCHEMAS: dict[str, Any] = {
    "SmsMessage": {
        "type": "object",
        "required": ["id", "direction", "to", "body", "status", "purpose", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "direction": {"type": "string", "enum": list(DIRECTIONS)},
            "to": {"type": "string", "description": "E.164; inbound: our number, if known"},
            "from": {**_NULLABLE_STRING, "description": "E.164 (inbound: the sender)"},
            "body": {"type": "string"},
            "segments": {"type": "integer", "minimum": 1},
            "status": {"type": "string", "enum": list(STATUSES)},
            "purpose": {
                "type": "string",
                "description": "offer, dispatch, family, reminder, ...; reply inbound",
            },
            "language": {"type": "string", "enum": ["zh-CN", "en"]},
            "provider_sid": _NULLABLE_STRING,
            "attempts": {"type": "integer"},
            "next_attempt_at": _NULLABLE_TIME,
            "last_error": _NULLABLE_STRING,
            "error_code": _NULLABLE_STRING,
            "context_id": {"type": ["string", "null"], "format": "uuid"},
            "subject_type": _NULLABLE_STRING,
            "subject_id": {"type": ["integer", "null"]},
            "job_id": {"type": ["integer", "null"]},
            "outcome": {**_NULLABLE_STRING, "description": "inbound: what routing did"},
            "flagged": {"type": "boolean"},
            "flag_reason": _NULLABLE_STRING,
            "created_at": {"type": "string", "format": "date-time"},
            "sent_at": _NULLABLE_TIME,
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
    "SmsPage": {
        "type": "object",
        "required": ["items", "next_before", "backend"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/SmsMessage"}},
            "next_before": {"type": ["integer", "null"], "description": "pass as `before` for the next page"},
            "backend": {"type": "string", "enum": ["twilio", "outbox"]},
        },
    },
    "OutboxReply": {
        "type": "object",
        "required": ["from", "body"],
        "properties": {
            "from": {"type": "string", "description": "the sender's phone, any common form"},
            "body": {"type": "string", "minLength": 1, "maxLength": 1600},
        },
    },
    "OutboxReplyResult": {
        "type": "object",
        "required": ["message_id", "outcome", "reply_ids"],
        "properties": {
            "message_id": {"type": "integer"},
            "outcome": {
                "type": "string",
                "enum": [
                    "acted",
                    "duplicate",
                    "unknown_sender",
                    "unparsed",
                    "ambiguous",
                    "no_job",
                    "handler_failed",
                ],
            },
            "job_id": {"type": ["integer", "null"]},
            "action": {"type": ["string", "null"], "enum": ["accept", "decline", "arrived", "done", None]},
            "reply_ids": {"type": "array", "items": {"type": "integer"}},
        },
    },
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


OPENAPI: dict[str, Any] = {
    "/api/v1/sms": {
        "get": {
            "summary": "SMS in and out, newest first",
            "parameters": [
                _query("direction", {"type": "string", "enum": list(DIRECTIONS)}, "in or out"),
                _query("status", {"type": "string", "enum": list(STATUSES)}, "message status"),
                _query(
                    "since", {"type": "string", "format": "date-time"}, "created at or after (with offset)"
                ),
                _query("phone", {"type": "string"}, "to or from this number"),
                _query(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50},
                    "page size",
                ),
                _query("before", {"type": "integer", "minimum": 1}, "ids below this (next_before of a page)"),
            ],
            "responses": {
                "200": {
                    "description": "one page",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SmsPage"}}},
                },
                "400": error_response("a filter is not valid"),
                "401": error_response("no valid bearer token"),
            },
        }
    },
    "/api/v1/sms/outbox/reply": {
        "post": {
            "summary": "Development outbox: receive a reply as if a provider or team had texted it",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OutboxReply"}}},
            },
            "responses": {
                "201": {
                    "description": "stored and routed like a real reply",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/OutboxReplyResult"}}
                    },
                },
                "400": error_response("the body is not valid"),
                "401": error_response("no valid bearer token"),
                "409": error_response("Twilio is configured: there is no outbox"),
            },
        }
    },
}
