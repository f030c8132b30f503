"""`/api/v1/notices`: what the floor must see — escalations, undelivered SMS, unknown senders.

Open notices (not yet acknowledged) come first, newest first. An escalation's
notice says in `data.audience` whom it is for (`supervisor`, `all`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dispatch.api.auth import current_user
from dispatch.api.errors import ApiError, bad_request, ok
from dispatch.api.keys import RUNTIME
from dispatch.api.openapi import error_response
from dispatch.api.paging import PAGING_PARAMETERS, page, page_params
from dispatch.notices import Notice, acknowledge_notice, find_notices

routes = web.RouteTableDef()


def notice_json(notice: Notice) -> dict[str, Any]:
    return {
        "id": notice.id,
        "kind": notice.kind,
        "severity": notice.severity.value,
        "text": notice.text,
        "about": {"type": notice.subject_type, "id": notice.subject_id},
        "audience": notice.data.get("audience", "all"),
        "created_at": notice.created_at.isoformat(),
        "acknowledged_at": notice.acknowledged_at.isoformat() if notice.acknowledged_at else None,
        "acknowledged_by": notice.acknowledged_by,
    }


@routes.get("/api/v1/notices")
async def list_notices(request: web.Request) -> web.Response:
    current_user(request)
    runtime = request.app[RUNTIME]
    limit, offset = page_params(request.query)
    include_acknowledged = request.query.get("all", "false")
    if include_acknowledged not in ("true", "false"):
        raise bad_request("all", "expected true or false")
    subject_type = request.query.get("subject_type") or None
    subject_raw = request.query.get("subject_id", "")
    if subject_raw and not (subject_raw.isascii() and subject_raw.isdigit() and len(subject_raw) < 19):
        raise bad_request("subject_id", "expected an id")
    async with runtime.pool.acquire() as conn:
        notices, total = await find_notices(
            conn,
            include_acknowledged=include_acknowledged == "true",
            subject_type=subject_type,
            subject_id=int(subject_raw) if subject_raw else None,
            limit=limit,
            offset=offset,
        )
    return ok(page([notice_json(n) for n in notices], total, limit, offset))


@routes.post(r"/api/v1/notices/{id:\d+}/acknowledge")
async def acknowledge(request: web.Request) -> web.Response:
    user = current_user(request)
    runtime = request.app[RUNTIME]
    raw = request.match_info["id"]
    if len(raw) > 18:
        raise ApiError(404, "not_found", "notice not found")
    async with runtime.pool.acquire() as conn, conn.transaction():
        exists = await conn.fetchval("SELECT acknowledged_at IS NULL FROM notices WHERE id = $1", int(raw))
        if exists is None:
            raise ApiError(404, "not_found", "notice not found")
        event = await acknowledge_notice(
            conn, int(raw), user.id, actor=f"user:{user.username}", at=runtime.clock()
        )
        if event is None:
            raise ApiError(409, "already_acknowledged", f"notice {raw} was already acknowledged")
    await runtime.bus.publish(event)
    return ok({"id": int(raw), "acknowledged": True})


OPENAPI: dict[str, Any] = {
    "/api/v1/notices": {
        "get": {
            "summary": "Notices for the floor: open ones first, newest first",
            "parameters": [
                *PAGING_PARAMETERS,
                {
                    "name": "all",
                    "in": "query",
                    "schema": {"type": "boolean"},
                    "description": "include acknowledged notices",
                },
                {"name": "subject_type", "in": "query", "schema": {"type": "string"}},
                {"name": "subject_id", "in": "query", "schema": {"type": "integer", "minimum": 1}},
            ],
            "responses": {
                "200": {
                    "description": "a page of notices",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "400": error_response("a bad filter"),
                "401": error_response("no or bad token"),
            },
        }
    },
    "/api/v1/notices/{id}/acknowledge": {
        "post": {
            "summary": "Acknowledge a notice (who and when are recorded)",
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": {
                "200": {
                    "description": "acknowledged",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "401": error_response("no or bad token"),
                "404": error_response("no such notice"),
                "409": error_response("already acknowledged"),
            },
        }
    },
}
