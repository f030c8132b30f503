"""`/api/v1/residents/{id}/care-plans`: a resident's care plans (关爱服务), each with its recent care
calls and every try of them (the call_attempts rows), to create, change, pause and resume.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from dispatch.api.auth import current_user
from dispatch.api.bodies import choice_field, int_field, json_object, text_field, time_field
from dispatch.api.errors import ApiError, bad_request, not_found, ok
from dispatch.api.keys import RUNTIME
from dispatch.api.openapi import error_response
from dispatch.call_tasks import tasks_of, tries_of
from dispatch.care_plans import (
    CarePlan,
    CarePlanDesk,
    CarePlanError,
    InvalidPlan,
    PlanFields,
    PlanNotFound,
    Schedule,
    get_plan,
    plans_of,
)
from dispatch.database import Conn

routes = web.RouteTableDef()

# the tasks (one per scheduled call) shown with a plan, newest first
RECENT_TASKS = 20


def _plan_error(exc: CarePlanError) -> ApiError:
    if isinstance(exc, PlanNotFound):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, InvalidPlan):
        return ApiError(400, exc.code, str(exc), field=exc.field)
    return ApiError(400, exc.code, str(exc))


def _path_id(request: web.Request, name: str, what: str) -> int:
    raw = request.match_info[name]
    if len(raw) > 18:
        raise not_found(what)
    return int(raw)


def _fields(body: Mapping[str, Any], *, creating: bool) -> PlanFields:
    schedule = (
        choice_field(body, "schedule", Schedule, default=Schedule.WEEKLY)
        if "schedule" in body or creating
        else None
    )
    days = body.get("days")
    if days is not None and (
        not isinstance(days, list) or any(isinstance(d, bool) or not isinstance(d, int) for d in days)
    ):
        raise bad_request("days", "expected a list of ISO days of the week, 1 (Monday) to 7")
    time_of_day = None
    if body.get("time_of_day") is not None:
        raw = text_field(body, "time_of_day", max_length=8)
        try:
            time_of_day = dt.time.fromisoformat(raw).replace(second=0, microsecond=0, tzinfo=None)
        except ValueError:
            raise bad_request("time_of_day", "expected a local time HH:MM") from None
    interval = body.get("interval_seconds")
    if interval is not None:
        interval = int_field(body, "interval_seconds")
    retry = body.get("retry_seconds")
    if retry is not None and (
        isinstance(retry, bool) or not isinstance(retry, int) or not 0 <= retry <= 86400
    ):
        raise bad_request("retry_seconds", "expected 0 to 86400")
    starts_at = time_field(body, "starts_at")
    active = body.get("active")
    if active is not None and not isinstance(active, bool):
        raise bad_request("active", "expected true or false")
    return PlanFields(
        schedule=schedule,
        days=days,
        time_of_day=time_of_day,
        interval_seconds=interval,
        starts_at=starts_at,
        unanswered_threshold=int_field(body, "unanswered_threshold"),
        retry_seconds=retry,
        notes=text_field(body, "notes") if "notes" in body else None,
        active=active,
    )


async def plan_json(conn: Conn, plan: CarePlan) -> dict[str, Any]:
    tasks = await tasks_of(conn, "care_plan", plan.id, limit=RECENT_TASKS)
    tries = await tries_of(conn, [t.id for t in tasks])
    return {
        **plan.as_json(),
        "calls": [{**t.as_json(), "tries": [a.as_json() for a in tries[t.id]]} for t in tasks],
    }


async def _owned(conn: Conn, request: web.Request) -> CarePlan:
    resident_id = _path_id(request, "id", "resident")
    try:
        plan = await get_plan(conn, _path_id(request, "plan_id", "care plan"))
    except PlanNotFound:
        raise not_found("care plan") from None
    if plan.resident_id != resident_id:
        raise not_found("care plan")
    return plan


@routes.get(r"/api/v1/residents/{id:\d+}/care-plans")
async def care_plans_list(request: web.Request) -> web.Response:
    current_user(request)
    resident_id = _path_id(request, "id", "resident")
    async with request.app[RUNTIME].pool.acquire() as conn:
        if not await conn.fetchval("SELECT 1 FROM residents WHERE id = $1", resident_id):
            raise not_found("resident")
        plans = [await plan_json(conn, p) for p in await plans_of(conn, resident_id)]
    return ok({"items": plans})


@routes.post(r"/api/v1/residents/{id:\d+}/care-plans")
async def care_plan_create(request: web.Request) -> web.Response:
    user = current_user(request)
    resident_id = _path_id(request, "id", "resident")
    body = await json_object(request, empty_ok=False)
    try:
        plan = await CarePlanDesk(request.app[RUNTIME]).create(
            resident_id, _fields(body, creating=True), f"user:{user.username}"
        )
    except PlanNotFound:
        raise not_found("resident") from None
    except CarePlanError as exc:
        raise _plan_error(exc) from None
    async with request.app[RUNTIME].pool.acquire() as conn:
        return ok(await plan_json(conn, plan), status=201)


@routes.get(r"/api/v1/residents/{id:\d+}/care-plans/{plan_id:\d+}")
async def care_plan_detail(request: web.Request) -> web.Response:
    current_user(request)
    async with request.app[RUNTIME].pool.acquire() as conn:
        return ok(await plan_json(conn, await _owned(conn, request)))


async def _change(request: web.Request, fields: PlanFields) -> web.Response:
    user = current_user(request)
    async with request.app[RUNTIME].pool.acquire() as conn:
        plan = await _owned(conn, request)
    try:
        changed = await CarePlanDesk(request.app[RUNTIME]).update(plan.id, fields, f"user:{user.username}")
    except CarePlanError as exc:
        raise _plan_error(exc) from None
    async with request.app[RUNTIME].pool.acquire() as conn:
        return ok(await plan_json(conn, changed))


@routes.patch(r"/api/v1/residents/{id:\d+}/care-plans/{plan_id:\d+}")
async def care_plan_update(request: web.Request) -> web.Response:
    body = await json_object(request)
    return await _change(request, _fields(body, creating=False))


@routes.post(r"/api/v1/residents/{id:\d+}/care-plans/{plan_id:\d+}/pause")
async def care_plan_pause(request: web.Request) -> web.Response:
    return await _change(request, PlanFields(active=False))


@routes.post(r"/api/v1/residents/{id:\d+}/care-plans/{plan_id:\d+}/resume")
async def care_plan_resume(request: web.Request) -> web.Response:
    return await _change(request, PlanFields(active=True))


def _ids(*names: str) -> list[dict[str, Any]]:
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
        for n in names
    ]


_FIELDS: dict[str, Any] = {
    "schedule": {"type": "string", "enum": [s.value for s in Schedule], "default": "weekly"},
    "days": {
        "type": "array",
        "items": {"type": "integer", "minimum": 1, "maximum": 7},
        "description": "weekly: ISO days of the week (1 = Monday)",
    },
    "time_of_day": {
        "type": "string",
        "pattern": "^[0-2][0-9]:[0-5][0-9]$",
        "description": "weekly: local HH:MM",
    },
    "interval_seconds": {"type": "integer", "minimum": 600, "maximum": 2678400},
    "starts_at": {"type": "string", "format": "date-time"},
    "unanswered_threshold": {"type": "integer", "minimum": 1, "maximum": 20},
    "retry_seconds": {"type": "integer", "minimum": 0, "maximum": 86400},
    "notes": {"type": "string", "maxLength": 2000},
    "active": {"type": "boolean"},
}
_PLAN = {"$ref": "#/components/schemas/CarePlan"}


def _reply(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _PLAN}}}


def _errors(*extra: tuple[str, str]) -> dict[str, Any]:
    found = {"401": error_response("no or bad token"), "404": error_response("no such resident or plan")}
    for status, text in extra:
        found[status] = error_response(text)
    return found


OPENAPI: dict[str, Any] = {
    "/api/v1/residents/{id}/care-plans": {
        "get": {
            "summary": "A resident's care plans, each with its recent care calls and their tries",
            "parameters": _ids("id"),
            "responses": {
                "200": {
                    "description": "the plans",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"items": {"type": "array", "items": _PLAN}},
                            }
                        }
                    },
                },
                **_errors(),
            },
        },
        "post": {
            "summary": "Start a care plan: weekly (days + local time) or every interval_seconds",
            "parameters": _ids("id"),
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object", "properties": _FIELDS}}},
            },
            "responses": {"201": _reply("the plan, its next call armed"), **_errors(("400", "a bad field"))},
        },
    },
    "/api/v1/residents/{id}/care-plans/{plan_id}": {
        "get": {
            "summary": "One care plan with its recent care calls and every try",
            "parameters": _ids("id", "plan_id"),
            "responses": {"200": _reply("the plan"), **_errors()},
        },
        "patch": {
            "summary": "Change a care plan (its next call is re-armed from the new schedule)",
            "parameters": _ids("id", "plan_id"),
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": {"type": "object", "properties": _FIELDS}}},
            },
            "responses": {"200": _reply("the plan"), **_errors(("400", "a bad field"))},
        },
    },
    "/api/v1/residents/{id}/care-plans/{plan_id}/pause": {
        "post": {
            "summary": "Pause a care plan: no more calls until it is resumed",
            "parameters": _ids("id", "plan_id"),
            "responses": {"200": _reply("the plan"), **_errors()},
        }
    },
    "/api/v1/residents/{id}/care-plans/{plan_id}/resume": {
        "post": {
            "summary": "Resume a paused care plan from its next scheduled time",
            "parameters": _ids("id", "plan_id"),
            "responses": {"200": _reply("the plan"), **_errors()},
        }
    },
}

SCHEMAS: dict[str, Any] = {
    "CarePlan": {
        "type": "object",
        "required": ["id", "resident_id", "schedule", "active", "calls"],
        "properties": {
            "id": {"type": "integer"},
            "resident_id": {"type": "integer"},
            "schedule": {"type": "string", "enum": [s.value for s in Schedule]},
            "active": {"type": "boolean"},
            "unanswered_in_a_row": {"type": "integer"},
            "next_due_at": {"type": ["string", "null"], "format": "date-time"},
            "calls": {"type": "array", "items": {"type": "object"}},
        },
    }
}
