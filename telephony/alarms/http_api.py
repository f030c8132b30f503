"""Alarms over HTTP: device clouds post signed JSON, AlarmReceiver's eventcmd posts its event
file, and the floor lists alarms and silent devices.

`POST /api/v1/alarms` and `POST /api/v1/alarms/contact-id` authenticate by HMAC
signature (see integrations.py), not by bearer token; they answer `202` only
after the alarm is committed, `200` with `"duplicate": true` for a repeat of an
event id already stored (nothing new is stored), `409` when an event id is reused
for different content, `401` naming the header for a bad signature or stale
timestamp, `400` naming the field for a bad body, `503` when the database is
unavailable (retry).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

import asyncpg
from aiohttp import web

from dispatch.api.auth import current_user
from dispatch.api.bodies import parse_json_object
from dispatch.api.errors import ApiError, bad_request, ok
from dispatch.api.keys import ALERT_DESK, RUNTIME
from dispatch.api.openapi import error_response
from dispatch.api.paging import PAGING_PARAMETERS, page, page_params, page_schema
from telephony.alarms.cid_intake import event_file_message
from telephony.alarms.contact_id import ContactIdError, parse_event_file
from telephony.alarms.heartbeats import silent_devices
from telephony.alarms.intake import DATABASE_DOWN, store
from telephony.alarms.integrations import (
    HEADER_KEY,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    Integration,
    IntegrationKeys,
    SignatureRefused,
    verify_request,
)
from telephony.alarms.kinds import AlarmKind, AlarmSource, Qualifier
from telephony.alarms.messages import DeviceKey, IncomingAlarm, Message, ReceiptConflict

routes = web.RouteTableDef()
INTEGRATION_KEYS = web.AppKey("integration_keys", IntegrationKeys)


def setup_app(app: web.Application) -> None:
    runtime = app[RUNTIME]
    app[INTEGRATION_KEYS] = IntegrationKeys(runtime.pool, runtime.config.security.secret_key)


MAX_BODY = 64 * 1024
CLOUD_KINDS = tuple(k.value for k in AlarmKind if k is not AlarmKind.STATUS)


async def _signed(request: web.Request) -> tuple[Integration, bytes]:
    runtime = request.app[RUNTIME]
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, "too_large", f"body: at most {MAX_BODY} bytes")
    body = await request.read()
    if len(body) > MAX_BODY:
        raise ApiError(413, "too_large", f"body: at most {MAX_BODY} bytes")
    try:
        integration = await verify_request(
            request.app[INTEGRATION_KEYS],
            key=request.headers.get(HEADER_KEY),
            timestamp=request.headers.get(HEADER_TIMESTAMP),
            signature=request.headers.get(HEADER_SIGNATURE),
            body=body,
            now=runtime.clock(),
            window_seconds=runtime.config.alarms.http_timestamp_window_seconds,
        )
    except SignatureRefused as exc:
        raise ApiError(401, "unauthorized", f"{exc.field}: {exc}", field=exc.field) from None
    return integration, body


def _text(body: Mapping[str, Any], name: str, *, max_length: int, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_length or not value.isprintable():
        raise bad_request(name, f"expected text of 1-{max_length} printable characters")
    return value.strip()


def _number(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad_request(name, f"expected a number from {low:g} to {high:g}")
    if not low <= value <= high:
        raise bad_request(name, f"expected a number from {low:g} to {high:g}")
    return float(value)


def _time(body: Mapping[str, Any]) -> dt.datetime:
    raw = body.get("time")
    if not isinstance(raw, str) or len(raw) > 40:
        raise bad_request("time", "expected an ISO 8601 time with its zone, e.g. 2026-11-23T08:00:00+08:00")
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise bad_request(
            "time", "expected an ISO 8601 time with its zone, e.g. 2026-11-23T08:00:00+08:00"
        ) from None
    if value.tzinfo is None:
        raise bad_request("time", "give the time zone, e.g. +08:00 or Z")
    return value


def cloud_alarm(body: Mapping[str, Any]) -> tuple[str, str, IncomingAlarm, int | None]:
    """(event id, device cloud id, the alarm, battery) from a device-cloud JSON body; 400 naming the field."""
    event_id = _text(body, "event_id", max_length=128)
    device = _text(body, "device_id", max_length=128)
    kind_raw = body.get("kind")
    if kind_raw not in CLOUD_KINDS:
        raise bad_request("kind", f"expected one of {', '.join(CLOUD_KINDS)}")
    kind = AlarmKind(kind_raw)
    restore = body.get("restore", False)
    if not isinstance(restore, bool):
        raise bad_request("restore", "expected true or false")
    at = _time(body)
    details: dict[str, Any] = {}
    location = body.get("location")
    if location is not None:
        if not isinstance(location, dict):
            raise bad_request("location", 'expected {"lat": …, "lon": …}')
        details["location"] = {
            "lat": _number(location.get("lat"), "location.lat", -90, 90),
            "lon": _number(location.get("lon"), "location.lon", -180, 180),
        }
        if location.get("accuracy_m") is not None:
            details["location"]["accuracy_m"] = _number(location["accuracy_m"], "location.accuracy_m", 0, 1e6)
    battery = body.get("battery")
    if battery is not None and (
        isinstance(battery, bool) or not isinstance(battery, int) or not 0 <= battery <= 100
    ):
        raise bad_request("battery", "expected a whole percentage 0-100")
    text = _text(body, "text", max_length=500, required=False)
    assert event_id is not None
    assert device is not None
    alarm = IncomingAlarm(
        kind=kind,
        qualifier=Qualifier.RESTORE if restore else Qualifier.NEW,
        code=kind.value,
        description=text or "",
        details=details,
        sender_at=at,
    )
    return event_id, device, alarm, battery


async def _take(request: web.Request, message: Message) -> web.Response:
    runtime = request.app[RUNTIME]
    try:
        stored = await store(runtime, request.app[ALERT_DESK], message)
    except ReceiptConflict:
        raise ApiError(
            409, "event_id_reused", "event_id: already used for a different alarm", field="event_id"
        ) from None
    except (*DATABASE_DOWN, asyncpg.PostgresError):
        raise ApiError(503, "unavailable", "the alarm could not be stored now; send it again") from None
    return ok(stored.result.as_json(), status=200 if stored.result.duplicate else 202)


@routes.post("/api/v1/alarms")
async def post_alarm(request: web.Request) -> web.Response:
    integration, raw = await _signed(request)
    body = parse_json_object(raw)
    event_id, cloud_id, alarm, battery = cloud_alarm(body)
    runtime = request.app[RUNTIME]
    # The digest is of the parsed body, so a retry re-serialised by another JSON library still matches.
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    message = Message(
        source=AlarmSource.HTTP,
        sender=f"http:{integration.id}:{cloud_id}",
        actor=f"http:{integration.name}",
        device=DeviceKey(cloud_id=cloud_id),
        payload=raw.decode("utf-8", "replace"),
        alarms=(alarm,),
        received_at=runtime.clock(),
        receipt_key=f"{integration.id}/{event_id}",
        digest=digest,
        reused_key_is_conflict=True,
        battery_percent=battery,
        integration_id=integration.id,
    )
    return await _take(request, message)


@routes.post("/api/v1/alarms/contact-id")
async def post_contact_id(request: web.Request) -> web.Response:
    integration, raw = await _signed(request)
    try:
        text = raw.decode("utf-8")
        parsed = parse_event_file(text)
    except UnicodeDecodeError:
        raise bad_request("body", "expected the event file as UTF-8 text") from None
    except ContactIdError as exc:
        raise bad_request("body", str(exc)) from None
    runtime = request.app[RUNTIME]
    return await _take(request, event_file_message(runtime, parsed, text, runtime.clock(), integration.id))


def _positive_id(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name, "")
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) < 19):
        raise bad_request(name, "expected an id")
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


LIST_ALARMS = """
SELECT al.id, al.source, al.kind, al.qualifier, al.code, al.zone, al.device_id, al.resident_id, al.outcome,
       al.sender_at, al.received_at, al.alert_id, al.notice_id, al.details,
       a.state AS alert_state, a.kind AS alert_kind
FROM alarms al LEFT JOIN alerts a ON a.id = al.alert_id
WHERE {where}
ORDER BY al.received_at DESC, al.id DESC LIMIT $5 OFFSET $6
"""
WHERE = """($1::timestamptz IS NULL OR al.received_at >= $1) AND ($2::bigint IS NULL OR al.device_id = $2)
           AND ($3::bigint IS NULL OR al.resident_id = $3) AND ($4::text IS NULL OR al.kind = $4)"""


@routes.get("/api/v1/alarms")
async def list_alarms(request: web.Request) -> web.Response:
    current_user(request)
    runtime = request.app[RUNTIME]
    limit, offset = page_params(request.query)
    kind = request.query.get("kind") or None
    if kind is not None and kind not in {k.value for k in AlarmKind}:
        raise bad_request("kind", f"expected one of {', '.join(k.value for k in AlarmKind)}")
    args = (
        _since(request.query),
        _positive_id(request.query, "device"),
        _positive_id(request.query, "resident"),
        kind,
    )
    async with runtime.pool.acquire() as conn:
        rows = await conn.fetch(LIST_ALARMS.format(where=WHERE), *args, limit, offset)
        total = await conn.fetchval(f"SELECT count(*) FROM alarms al WHERE {WHERE}", *args)
    items = [
        {
            "id": r["id"],
            "source": r["source"],
            "kind": r["kind"],
            "qualifier": r["qualifier"],
            "code": r["code"],
            "zone": r["zone"],
            "device_id": r["device_id"],
            "resident_id": r["resident_id"],
            "outcome": r["outcome"],
            "sender_at": r["sender_at"].isoformat() if r["sender_at"] else None,
            "received_at": r["received_at"].isoformat(),
            "details": r["details"],
            "notice_id": r["notice_id"],
            "alert": {"id": r["alert_id"], "state": r["alert_state"], "kind": r["alert_kind"]}
            if r["alert_id"]
            else None,
        }
        for r in rows
    ]
    return ok(page(items, int(total), limit, offset))


@routes.get("/api/v1/devices/silent")
async def list_silent(request: web.Request) -> web.Response:
    current_user(request)
    runtime = request.app[RUNTIME]
    limit, offset = page_params(request.query)
    now = runtime.clock()
    async with runtime.pool.acquire() as conn:
        devices, total = await silent_devices(conn, now, limit=limit, offset=offset)
    items = [
        {
            "id": d.id,
            "serial": d.serial,
            "kind": d.kind,
            "resident_id": d.resident_id,
            "last_seen_at": d.last_seen_at.isoformat() if d.last_seen_at else None,
            "heartbeat_interval_s": d.heartbeat_interval_s,
            "silent_since": d.silent_after.isoformat(),
            "overdue_seconds": int((now - d.silent_after).total_seconds()),
            "battery_percent": d.battery_percent,
            "noticed_at": d.noticed_at.isoformat() if d.noticed_at else None,
        }
        for d in devices
    ]
    return ok(page(items, total, limit, offset))


# -- OpenAPI -------------------------------------------------------------------------------

_SIGNED_HEADERS: list[dict[str, Any]] = [
    {
        "name": HEADER_KEY,
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": "the integration's key (ck_…) from `careline integration add`",
    },
    {
        "name": HEADER_TIMESTAMP,
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": "Unix seconds; within alarms.http_timestamp_window_seconds of our clock",
    },
    {
        "name": HEADER_SIGNATURE,
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": "hex HMAC-SHA256(secret, timestamp + '.' + raw body)",
    },
]
_INTAKE_RESPONSES: dict[str, Any] = {
    "202": {
        "description": (
            "stored (committed); an alarm whose outcome is 'pending' is being given its meaning"
            " (an alert raised or joined) at once: GET /api/v1/alarms shows it"
        ),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AlarmIntake"}}},
    },
    "200": {
        "description": "a repeat of an event already stored: nothing new stored",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AlarmIntake"}}},
    },
    "400": error_response("a field is missing or wrong (named in error.field)"),
    "401": error_response("missing or bad signature, stale timestamp, unknown key"),
    "409": error_response("event_id reused for a different alarm"),
    "413": error_response("body too large"),
    "503": error_response("the database is unavailable: send again"),
}

SCHEMAS: dict[str, Any] = {
    "CloudAlarm": {
        "type": "object",
        "required": ["event_id", "device_id", "kind", "time"],
        "properties": {
            "event_id": {
                "type": "string",
                "minLength": 1,
                "maxLength": 128,
                "description": "the sender's own id of this event; a repeat is stored once",
            },
            "device_id": {
                "type": "string",
                "minLength": 1,
                "maxLength": 128,
                "description": "the device's id at the cloud (devices.cloud_id)",
            },
            "kind": {"type": "string", "enum": list(CLOUD_KINDS)},
            "restore": {"type": "boolean", "description": "the condition ended (default false)"},
            "time": {"type": "string", "format": "date-time", "description": "when it happened, with zone"},
            "location": {
                "type": "object",
                "required": ["lat", "lon"],
                "properties": {
                    "lat": {"type": "number", "minimum": -90, "maximum": 90},
                    "lon": {"type": "number", "minimum": -180, "maximum": 180},
                    "accuracy_m": {"type": "number", "minimum": 0},
                },
            },
            "battery": {"type": "integer", "minimum": 0, "maximum": 100},
            "text": {"type": "string", "maxLength": 500},
        },
    },
    "AlarmIntake": {
        "type": "object",
        "required": ["duplicate", "alarms"],
        "properties": {
            "duplicate": {"type": "boolean"},
            "device_id": {"type": ["integer", "null"]},
            "alarms": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Alarm": {"type": "object"},
    "AlarmPage": page_schema("Alarm"),
    "SilentDevice": {"type": "object"},
    "SilentDevicePage": page_schema("SilentDevice"),
}

OPENAPI: dict[str, Any] = {
    "/api/v1/alarms": {
        "post": {
            "summary": "A device cloud reports an alarm (HMAC-signed; 202 only once it is committed)",
            "security": [],
            "parameters": _SIGNED_HEADERS,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CloudAlarm"}}},
            },
            "responses": _INTAKE_RESPONSES,
        },
        "get": {
            "summary": "Alarms received, newest first, each with the alert it fed",
            "parameters": [
                *PAGING_PARAMETERS,
                {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                {"name": "device", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                {"name": "resident", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                {
                    "name": "kind",
                    "in": "query",
                    "schema": {"type": "string", "enum": [k.value for k in AlarmKind]},
                },
            ],
            "responses": {
                "200": {
                    "description": "a page of alarms",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AlarmPage"}}},
                },
                "400": error_response("a bad filter"),
                "401": error_response("no or bad token"),
            },
        },
    },
    "/api/v1/alarms/contact-id": {
        "post": {
            "summary": "Asterisk AlarmReceiver's event file, posted by its eventcmd (HMAC-signed)",
            "security": [],
            "parameters": _SIGNED_HEADERS,
            "requestBody": {"required": True, "content": {"text/plain": {"schema": {"type": "string"}}}},
            "responses": _INTAKE_RESPONSES,
        }
    },
    "/api/v1/devices/silent": {
        "get": {
            "summary": "Active devices silent for two heartbeat intervals, longest silent first",
            "parameters": PAGING_PARAMETERS,
            "responses": {
                "200": {
                    "description": "a page of devices",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/SilentDevicePage"}}
                    },
                },
                "400": error_response("bad paging"),
                "401": error_response("no or bad token"),
            },
        }
    },
}
