"""`/api/v1/alerts/{id}/follow-ups`: open follow-up work from an alert in one action (a follow-up
call within 24 h, a nursing visit, a repair), linked to it; and list what was opened.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dispatch.alert_follow_ups import FollowUpRequest, FollowUpType, NoResident, follow_ups_of, open_follow_up
from dispatch.alerts import AlertNotFound
from dispatch.api.auth import current_user
from dispatch.api.bodies import choice_field, json_object, text_field, time_field
from dispatch.api.errors import ApiError, not_found, ok
from dispatch.api.keys import ORDER_DESK, RUNTIME
from dispatch.api.openapi import error_response
from dispatch.api.orders import order_error
from dispatch.orders import OrderError

routes = web.RouteTableDef()


def _alert_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if len(raw) > 18:
        raise not_found("alert")
    return int(raw)


@routes.post(r"/api/v1/alerts/{id:\d+}/follow-ups")
async def follow_up_open(request: web.Request) -> web.Response:
    user = current_user(request)
    body = await json_object(request)
    follow_up = FollowUpRequest(
        type=choice_field(body, "type", FollowUpType, default=FollowUpType.FOLLOW_UP_CALL),
        due_at=time_field(body, "due_at"),
        item_code=text_field(body, "item_code", max_length=64) or None,
        window_start=time_field(body, "window_start"),
        window_end=time_field(body, "window_end"),
        notes=text_field(body, "notes"),
    )
    try:
        opened = await open_follow_up(
            request.app[ORDER_DESK], _alert_id(request), follow_up, f"user:{user.username}"
        )
    except AlertNotFound:
        raise not_found("alert") from None
    except NoResident as exc:
        raise ApiError(409, exc.code, str(exc)) from None
    except OrderError as exc:
        raise order_error(exc) from None
    return ok(opened, status=201)


@routes.get(r"/api/v1/alerts/{id:\d+}/follow-ups")
async def follow_up_list(request: web.Request) -> web.Response:
    current_user(request)
    async with request.app[RUNTIME].pool.acquire() as conn:
        try:
            return ok(await follow_ups_of(conn, _alert_id(request)))
        except AlertNotFound:
            raise not_found("alert") from None


_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}]
_OBJECT: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}

OPENAPI: dict[str, Any] = {
    "/api/v1/alerts/{id}/follow-ups": {
        "get": {
            "summary": "Follow-up work opened from the alert: its calls and its orders",
            "parameters": _ID,
            "responses": {
                "200": {"description": "calls and orders", "content": _OBJECT},
                "401": error_response("no or bad token"),
                "404": error_response("no such alert"),
            },
        },
        "post": {
            "summary": "Open follow-up work from the alert: a follow-up call (default, within 24 h), "
            "a nursing visit or a repair (a service order with a catalogue item), linked to it",
            "parameters": _ID,
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "type": {
                                    "type": "string",
                                    "enum": [t.value for t in FollowUpType],
                                    "default": "follow_up_call",
                                },
                                "due_at": {"type": "string", "format": "date-time"},
                                "item_code": {"type": "string", "maxLength": 64},
                                "window_start": {"type": "string", "format": "date-time"},
                                "window_end": {"type": "string", "format": "date-time"},
                                "notes": {"type": "string", "maxLength": 2000},
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": {"description": "the call task or the order opened", "content": _OBJECT},
                "400": error_response("a bad field (named in the error)"),
                "401": error_response("no or bad token"),
                "404": error_response("no such alert"),
                "409": error_response("the alert has no known resident, or the order cannot be offered"),
            },
        },
    }
}
