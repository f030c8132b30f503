"""`/api/v1/calls`: every call through Asterisk, and the calls the console asks Careline to place.

Placing a call answers 202 with the attempt at once: Asterisk rings for up to
`originate_ring_seconds`, and the result arrives as `call_attempt.finished` (and is
read back with `GET /api/v1/calls/attempts/{id}`). With no Asterisk link up the
attempt is still written, failed, and the answer is 409 `asterisk_unavailable`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from dispatch.api.auth import current_user
from dispatch.api.bodies import int_field, json_object, text_field
from dispatch.api.errors import ApiError, bad_request, not_found, ok
from dispatch.api.keys import RUNTIME
from dispatch.api.openapi import error_response
from dispatch.api.paging import PAGING_PARAMETERS, page, page_params, page_schema, query_text
from dispatch.events import timeline
from telephony.call_records import get_call, list_calls
from telephony.calls import Disposition
from telephony.originate import (
    CallAttempt,
    CallError,
    Originator,
    Purpose,
    TelephonyUnavailable,
    get_attempt,
    place_callback,
    place_family_call,
)

routes = web.RouteTableDef()

ORIGINATOR: web.AppKey[Originator] = web.AppKey("originator", Originator)
_EXTENSION = re.compile(r"[0-9]{2,6}")


def _id(request: web.Request, what: str) -> int:
    raw = request.match_info["id"]
    if len(raw) > 18:
        raise not_found(what)
    return int(raw)


def _since(query: Mapping[str, str]) -> dt.datetime | None:
    raw = query.get("since")
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise bad_request("since", "expected an ISO 8601 time such as 2026-11-23T08:00:00+08:00") from None
    if value.tzinfo is None:
        raise bad_request("since", "give the time zone, e.g. +08:00")
    return value


@routes.get("/api/v1/calls")
async def calls_list(request: web.Request) -> web.Response:
    current_user(request)
    limit, offset = page_params(request.query)
    resident_raw = request.query.get("resident", "")
    if resident_raw and not (resident_raw.isascii() and resident_raw.isdigit() and len(resident_raw) < 19):
        raise bad_request("resident", "expected a resident id")
    disposition_raw = request.query.get("disposition")
    try:
        disposition = Disposition(disposition_raw) if disposition_raw else None
    except ValueError:
        raise bad_request(
            "disposition", f"expected one of {', '.join(d.value for d in Disposition)}"
        ) from None
    async with request.app[RUNTIME].pool.acquire() as conn:
        calls, total = await list_calls(
            conn,
            since=_since(request.query),
            resident_id=int(resident_raw) if resident_raw else None,
            disposition=disposition,
            server=query_text(request.query, "server"),
            limit=limit,
            offset=offset,
        )
    return ok(page([c.as_json() for c in calls], total, limit, offset))


@routes.get(r"/api/v1/calls/{id:\d+}")
async def call_detail(request: web.Request) -> web.Response:
    current_user(request)
    call_id = _id(request, "call")
    async with request.app[RUNTIME].pool.acquire() as conn:
        call = await get_call(conn, call_id)
        if call is None:
            raise not_found("call")
        entries = await timeline(conn, "call", call_id)
        attempt = await get_attempt(conn, call.attempt_id) if call.attempt_id else None
    return ok(
        {
            "call": call.as_json(),
            "attempt": attempt.as_json() if attempt else None,
            "timeline": [{"at": e.occurred_at.isoformat(), "kind": e.kind, "data": e.data} for e in entries],
        }
    )


@routes.get(r"/api/v1/calls/attempts/{id:\d+}")
async def attempt_detail(request: web.Request) -> web.Response:
    current_user(request)
    async with request.app[RUNTIME].pool.acquire() as conn:
        attempt = await get_attempt(conn, _id(request, "call attempt"))
    if attempt is None:
        raise not_found("call attempt")
    return ok({"attempt": attempt.as_json()})


def _operator(body: Mapping[str, Any], *, required: bool) -> str | None:
    operator = text_field(body, "operator", required=required, max_length=10)
    if not operator:
        return None
    if not _EXTENSION.fullmatch(operator):
        raise bad_request("operator", "expected the operator's extension, 2-6 digits such as 8001")
    return operator


def _originator(request: web.Request) -> Originator:
    originator = request.app.get(ORIGINATOR)
    if originator is None:
        raise ApiError(409, "asterisk_unavailable", "telephony is not running in this service")
    return originator


def _placed(attempt: CallAttempt) -> web.Response:
    return ok({"attempt": attempt.as_json()}, status=202)


def _call_error(exc: CallError) -> ApiError:
    if isinstance(exc, TelephonyUnavailable):
        return ApiError(exc.status, exc.code, str(exc), attempt=exc.attempt.as_json())
    return ApiError(exc.status, exc.code, str(exc))


@routes.post("/api/v1/calls/callback")
async def callback(request: web.Request) -> web.Response:
    """Ring the operator's phone, then the resident (or a number), showing the hotline number."""
    user = current_user(request)
    body = await json_object(request, empty_ok=False)
    resident_id = int_field(body, "resident_id")
    number = text_field(body, "number", max_length=40) or None
    if resident_id is None and number is None:
        raise bad_request("resident_id", "give resident_id or number")
    operator = _operator(body, required=True)
    assert operator is not None
    try:
        attempt = await place_callback(
            _originator(request),
            operator=operator,
            resident_id=resident_id,
            number=number,
            requested_by=f"user:{user.username}",
            server=text_field(body, "server", max_length=32) or None,
        )
    except CallError as exc:
        raise _call_error(exc) from None
    return _placed(attempt)


@routes.post("/api/v1/calls/family")
async def family(request: web.Request) -> web.Response:
    """Call an emergency contact of an alert's resident (by position), through the operator's phone
    when `operator` is given."""
    user = current_user(request)
    body = await json_object(request, empty_ok=False)
    alert_id = int_field(body, "alert_id", required=True)
    position = int_field(body, "position", required=True)
    assert alert_id is not None
    assert position is not None
    if position > 99:
        raise bad_request("position", "expected a contact position from 1 to 99")
    try:
        attempt = await place_family_call(
            _originator(request),
            alert_id=alert_id,
            position=position,
            operator=_operator(body, required=False),
            requested_by=f"user:{user.username}",
            server=text_field(body, "server", max_length=32) or None,
        )
    except CallError as exc:
        raise _call_error(exc) from None
    return _placed(attempt)


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


def _id_param(what: str) -> dict[str, Any]:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "description": what,
        "schema": {"type": "integer", "minimum": 1},
    }


_CALL_REF = {"$ref": "#/components/schemas/Call"}
_ATTEMPT_REF = {"$ref": "#/components/schemas/CallAttempt"}
_PLACED = {
    "202": {
        "description": "the attempt, written and sent to Asterisk; its result comes later",
        "content": {
            "application/json": {"schema": {"type": "object", "properties": {"attempt": _ATTEMPT_REF}}}
        },
    },
    "400": error_response("a bad or missing field"),
    "401": error_response("no or bad token"),
    "404": error_response("no such resident, alert or contact"),
    "409": error_response(
        "no Asterisk link is up (the failed attempt is in the error), or no number to call"
    ),
}

OPENAPI: dict[str, Any] = {
    "/api/v1/calls": {
        "get": {
            "summary": "Calls through Asterisk, newest first",
            "parameters": [
                *PAGING_PARAMETERS,
                {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                {"name": "resident", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                {
                    "name": "disposition",
                    "in": "query",
                    "schema": {"type": "string", "enum": [d.value for d in Disposition]},
                },
                {"name": "server", "in": "query", "schema": {"type": "string", "maxLength": 100}},
            ],
            "responses": {
                "200": {
                    "description": "a page of calls",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CallPage"}}},
                },
                "400": error_response("a bad filter"),
                "401": error_response("no or bad token"),
            },
        }
    },
    "/api/v1/calls/{id}": {
        "get": {
            "summary": "One call, the attempt that placed it (if Careline did) and its timeline",
            "parameters": [_id_param("call id")],
            "responses": {
                "200": {
                    "description": "the call",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "call": _CALL_REF,
                                    "attempt": {"oneOf": [_ATTEMPT_REF, {"type": "null"}]},
                                    "timeline": {"type": "array", "items": {"type": "object"}},
                                },
                            }
                        }
                    },
                },
                "401": error_response("no or bad token"),
                "404": error_response("no such call"),
            },
        }
    },
    "/api/v1/calls/attempts/{id}": {
        "get": {
            "summary": "A call Careline placed: its result, reason code and the digit pressed",
            "parameters": [_id_param("call attempt id")],
            "responses": {
                "200": {
                    "description": "the attempt",
                    "content": {
                        "application/json": {
                            "schema": {"type": "object", "properties": {"attempt": _ATTEMPT_REF}}
                        }
                    },
                },
                "401": error_response("no or bad token"),
                "404": error_response("no such attempt"),
            },
        }
    },
    "/api/v1/calls/callback": {
        "post": {
            "summary": "Call a resident back: ring the operator's extension, then the resident",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["operator"],
                            "properties": {
                                "resident_id": {"type": "integer", "minimum": 1},
                                "number": {"type": "string", "maxLength": 40},
                                "operator": {"type": "string", "pattern": "^[0-9]{2,6}$"},
                                "server": {"type": "string", "maxLength": 32},
                            },
                        }
                    }
                },
            },
            "responses": _PLACED,
        }
    },
    "/api/v1/calls/family": {
        "post": {
            "summary": "Call an emergency contact of an alert's resident",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["alert_id", "position"],
                            "properties": {
                                "alert_id": {"type": "integer", "minimum": 1},
                                "position": {"type": "integer", "minimum": 1, "maximum": 99},
                                "operator": {"type": "string", "pattern": "^[0-9]{2,6}$"},
                                "server": {"type": "string", "maxLength": 32},
                            },
                        }
                    }
                },
            },
            "responses": _PLACED,
        }
    },
}

SCHEMAS: dict[str, Any] = {
    "Call": {
        "type": "object",
        "required": ["id", "server", "linkedid", "direction", "arrived_at"],
        "properties": {
            "id": {"type": "integer"},
            "server": {"type": "string"},
            "linkedid": {"type": "string"},
            "direction": {"type": "string", "enum": ["inbound", "outbound"]},
            "caller_number": _nullable("string", description="E.164 when it parses"),
            "called_number": _nullable("string"),
            "did": _nullable("string"),
            "emergency": {"type": "boolean"},
            "party": _nullable("string", enum=["resident", "provider", "team", "unknown", None]),
            "resident_id": _nullable("integer"),
            "device_id": _nullable("integer"),
            "provider_id": _nullable("integer"),
            "team_id": _nullable("integer"),
            "alert_id": _nullable("integer"),
            "attempt_id": _nullable("integer"),
            "queue": _nullable("string"),
            "operator": _nullable("string"),
            "arrived_at": {"type": "string", "format": "date-time"},
            "answered_at": _nullable("string", format="date-time"),
            "ended_at": _nullable("string", format="date-time"),
            "wait_seconds": _nullable("integer"),
            "talk_seconds": _nullable("integer"),
            "disposition": _nullable("string", enum=[*(d.value for d in Disposition), None]),
            "hangup_cause": _nullable("integer", description="Q.850"),
            "resynced": {"type": "boolean"},
            "wait_reason": _nullable("string", description="why a long wait was long, as the operator said"),
        },
    },
    "CallPage": page_schema("Call"),
    "CallAttempt": {
        "type": "object",
        "required": ["id", "purpose", "action_id", "state"],
        "properties": {
            "id": {"type": "integer"},
            "purpose": {"type": "string", "enum": [p.value for p in Purpose]},
            "server": {"type": "string"},
            "action_id": {"type": "string"},
            "target": {"type": "string"},
            "state": {"type": "string", "enum": ["pending", "queued", "finished"]},
            "result": _nullable("string", enum=["answered", "busy", "no_answer", "failed", None]),
            "reason_code": _nullable("integer"),
            "reason": {"type": "string"},
            "digit": _nullable("string"),
            "read_status": _nullable("string"),
            "call_id": _nullable("integer"),
        },
    },
}
