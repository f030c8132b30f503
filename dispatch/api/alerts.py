"""`/api/v1/alerts`: the emergency lane for the console and integrations.

One POST per action. An action the alert's state does not allow is 409 with
the current state, so a console that lost a race shows what happened instead.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from dispatch.alert_desk import Actor, AlertDesk, NoTeamAvailable
from dispatch.alert_figures import daily_figures
from dispatch.alerts import (
    Alert,
    AlertError,
    AlertKind,
    AlertNotFound,
    AlertSource,
    AlertState,
    IllegalTransition,
    Outcome,
    ReasonRequired,
    get_alert,
    list_alerts,
)
from dispatch.api.auth import current_user
from dispatch.api.bodies import bool_field, choice_field, int_field, json_object, text_field
from dispatch.api.errors import ApiError, bad_request, not_found, ok
from dispatch.api.keys import ALERT_DESK, RUNTIME
from dispatch.api.openapi import error_response
from dispatch.api.paging import PAGING_PARAMETERS, page, page_params, time_param
from dispatch.api.residents import card_json
from dispatch.deadlines import pending_deadlines
from dispatch.events import timeline
from dispatch.residents import get_resident
from dispatch.team_choice import rank_teams

routes = web.RouteTableDef()


def _alert_error(exc: AlertError) -> ApiError:
    if isinstance(exc, IllegalTransition):
        return ApiError(409, exc.code, str(exc), state=exc.current.value)
    if isinstance(exc, AlertNotFound):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, ReasonRequired):
        return ApiError(400, exc.code, str(exc), field="reason")
    if isinstance(exc, NoTeamAvailable):
        return ApiError(409, exc.code, str(exc))
    return ApiError(400, exc.code, str(exc))


def _alert_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if len(raw) > 18:
        raise not_found("alert")
    return int(raw)


@routes.get("/api/v1/alerts")
async def alerts_list(request: web.Request) -> web.Response:
    current_user(request)
    runtime = request.app[RUNTIME]
    limit, offset = page_params(request.query)
    state_raw = request.query.get("state")
    try:
        state = AlertState(state_raw) if state_raw else None
    except ValueError:
        raise bad_request("state", f"expected one of {', '.join(s.value for s in AlertState)}") from None
    resident_raw = request.query.get("resident", "")
    if resident_raw and not (resident_raw.isascii() and resident_raw.isdigit() and len(resident_raw) < 19):
        raise bad_request("resident", "expected a resident id")
    async with runtime.pool.acquire() as conn:
        alerts, total = await list_alerts(
            conn,
            since=time_param(request.query),
            state=state,
            resident_id=int(resident_raw) if resident_raw else None,
            limit=limit,
            offset=offset,
        )
    return ok(page([a.as_json() for a in alerts], total, limit, offset))


@routes.get(r"/api/v1/alerts/{id:\d+}")
async def alert_detail(request: web.Request) -> web.Response:
    current_user(request)
    runtime = request.app[RUNTIME]
    alert_id = _alert_id(request)
    async with runtime.pool.acquire() as conn:
        try:
            alert = await get_alert(conn, alert_id)
        except AlertNotFound:
            raise not_found("alert") from None
        card = await get_resident(conn, alert.resident_id) if alert.resident_id else None
        teams = await rank_teams(conn, alert_id, runtime.clock(), runtime.tz) if alert.state.is_open else []
        entries = await timeline(conn, "alert", alert_id)
        deadlines = await pending_deadlines(conn, "alert", alert_id)
    today = runtime.clock().astimezone(runtime.tz).date()
    return ok(
        {
            "alert": alert.as_json(),
            "resident": card_json(card, runtime.phones, today) if card else None,
            "teams": [
                {
                    "team_id": t.team_id,
                    "code": t.code,
                    "name": t.name,
                    "distance_km": t.distance_km,
                    "suggested": i == 0 and t.eligible,
                    "eligible": t.eligible,
                    "reasons": t.reasons,
                }
                for i, t in enumerate(teams)
            ],
            "deadlines": [{"kind": d.kind, "due_at": d.due_at.isoformat()} for d in deadlines],
            "timeline": [e.as_json() for e in entries],
        }
    )


@routes.post("/api/v1/alerts")
async def alert_raise(request: web.Request) -> web.Response:
    """An operator raises an alert from a phone call (or an integration from its own signal)."""
    user = current_user(request)
    desk = request.app[ALERT_DESK]
    body = await json_object(request, empty_ok=False)
    resident_id = int_field(body, "resident_id")
    device_id = int_field(body, "device_id")
    if resident_id is None and device_id is None:
        raise bad_request("resident_id", "give resident_id or device_id")
    kind = choice_field(body, "kind", AlertKind, default=AlertKind.SOS)
    text = text_field(body, "note")
    async with request.app[RUNTIME].pool.acquire() as conn:
        if resident_id is not None and not await conn.fetchval(
            "SELECT 1 FROM residents WHERE id = $1", resident_id
        ):
            raise bad_request("resident_id", f"no resident {resident_id}")
        if device_id is not None and not await conn.fetchval(
            "SELECT 1 FROM devices WHERE id = $1", device_id
        ):
            raise bad_request("device_id", f"no device {device_id}")
    raised = await desk.raise_and_publish(
        source=AlertSource.OPERATOR,
        kind=kind,
        resident_id=resident_id,
        device_id=device_id,
        context={"note": text} if text else {},
        actor=Actor.user(user.username),
    )
    return ok(
        {"alert": raised.alert.as_json(), "created": raised.created}, status=201 if raised.created else 200
    )


Action = Callable[[AlertDesk, int, Actor, dict[str, Any]], Awaitable[Alert]]


async def _acknowledge(desk: AlertDesk, alert_id: int, actor: Actor, body: dict[str, Any]) -> Alert:
    return await desk.acknowledge(
        alert_id, actor, real=bool_field(body, "real"), reason=text_field(body, "reason")
    )


async def _dispatch(desk: AlertDesk, alert_id: int, actor: Actor, body: dict[str, Any]) -> Alert:
    return await desk.dispatch(
        alert_id, actor, team_id=int_field(body, "team_id"), reason=text_field(body, "reason")
    )


async def _team_acknowledge(desk: AlertDesk, alert_id: int, actor: Actor, body: dict[str, Any]) -> Alert:
    return await desk.team_acknowledge(alert_id, actor)


async def _on_scene(desk: AlertDesk, alert_id: int, actor: Actor, body: dict[str, Any]) -> Alert:
    return await desk.on_scene(alert_id, actor)


async def _resolve(desk: AlertDesk, alert_id: int, actor: Actor, body: dict[str, Any]) -> Alert:
    if body.get("outcome") is None:
        raise bad_request("outcome", f"is required: one of {', '.join(o.value for o in Outcome)}")
    outcome = choice_field(body, "outcome", Outcome)
    return await desk.resolve(alert_id, actor, outcome=outcome, reason=text_field(body, "reason"))


async def _cancel(desk: AlertDesk, alert_id: int, actor: Actor, body: dict[str, Any]) -> Alert:
    return await desk.cancel(
        alert_id,
        actor,
        reason=text_field(body, "reason", required=True),
        false_alarm=bool_field(body, "false_alarm"),
    )


async def _handoff_120(desk: AlertDesk, alert_id: int, actor: Actor, body: dict[str, Any]) -> Alert:
    return await desk.handoff_120(alert_id, actor, reason=text_field(body, "reason"))


async def _note(desk: AlertDesk, alert_id: int, actor: Actor, body: dict[str, Any]) -> Alert:
    await desk.add_note(alert_id, actor, text_field(body, "text", required=True))
    async with desk.runtime.pool.acquire() as conn:
        return await get_alert(conn, alert_id)


ACTIONS: dict[str, tuple[Action, str, dict[str, Any]]] = {
    "acknowledge": (
        _acknowledge,
        "Take the alert (stops the unacknowledged escalation); real=true tells the family now",
        {"real": {"type": "boolean"}, "reason": {"type": "string"}},
    ),
    "dispatch": (
        _dispatch,
        "Send the suggested team, or team_id when the operator chooses another",
        {"team_id": {"type": "integer"}, "reason": {"type": "string"}},
    ),
    "team-acknowledge": (
        _team_acknowledge,
        "The team confirmed it is going (as its SMS reply '1 <code>')",
        {},
    ),
    "on-scene": (_on_scene, "The team is at the door (as its SMS reply '3 <code>')", {}),
    "resolve": (
        _resolve,
        "Close with an outcome; a reason is required when the alert escalated",
        {"outcome": {"type": "string", "enum": [o.value for o in Outcome]}, "reason": {"type": "string"}},
    ),
    "cancel": (
        _cancel,
        "Cancel (resident cancelled, or a false alarm confirmed by call-back); reason required",
        {"reason": {"type": "string"}, "false_alarm": {"type": "boolean"}},
    ),
    "handoff-120": (_handoff_120, "Record the hand-off to 120 with its time", {"reason": {"type": "string"}}),
    "note": (_note, "Add a note to the timeline", {"text": {"type": "string"}}),
}


def _action_handler(action: Action) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        user = current_user(request)
        body = await json_object(request)
        try:
            alert = await action(request.app[ALERT_DESK], _alert_id(request), Actor.user(user.username), body)
        except AlertError as exc:
            raise _alert_error(exc) from None
        return ok({"alert": alert.as_json()})

    return handler


for _name, _spec in ACTIONS.items():
    routes.post(rf"/api/v1/alerts/{{id:\d+}}/{_name}")(_action_handler(_spec[0]))


@routes.get("/api/v1/alerts/figures")
async def alert_figures(request: web.Request) -> web.Response:
    current_user(request)
    runtime = request.app[RUNTIME]
    days_raw = request.query.get("days", "7")
    if not (days_raw.isascii() and days_raw.isdigit() and 1 <= int(days_raw) <= 366):
        raise bad_request("days", "expected a whole number of days from 1 to 366")
    today = runtime.clock().astimezone(runtime.tz).date()
    async with runtime.pool.acquire() as conn:
        figures = await daily_figures(
            conn,
            first=today - dt.timedelta(days=int(days_raw) - 1),
            last=today,
            tz=runtime.config.locale.timezone,
            ack_deadline_seconds=runtime.config.alerts.ack_supervisor_seconds,
        )
    return ok({"days": [f.as_json() for f in figures], "today": figures[-1].as_json()})


def _id_param() -> dict[str, Any]:
    return {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}


_ALERT_RESPONSE = {
    "description": "the alert after the action",
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"alert": {"$ref": "#/components/schemas/Alert"}}}
        }
    },
}

OPENAPI: dict[str, Any] = {
    "/api/v1/alerts": {
        "get": {
            "summary": "Alerts, open ones first (oldest first), then closed ones (newest first)",
            "parameters": [
                *PAGING_PARAMETERS,
                {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                {
                    "name": "state",
                    "in": "query",
                    "schema": {"type": "string", "enum": [s.value for s in AlertState]},
                },
                {"name": "resident", "in": "query", "schema": {"type": "integer", "minimum": 1}},
            ],
            "responses": {
                "200": {
                    "description": "a page of alerts",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "400": error_response("a bad filter"),
                "401": error_response("no or bad token"),
            },
        },
        "post": {
            "summary": "Raise an alert (an operator, from a phone call); joins the open one of that kind",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "resident_id": {"type": "integer", "minimum": 1},
                                "device_id": {"type": "integer", "minimum": 1},
                                "kind": {"type": "string", "enum": [k.value for k in AlertKind]},
                                "note": {"type": "string"},
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": {
                    "description": "a new alert",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "200": {
                    "description": "joined the open alert",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "400": error_response("a bad field"),
                "401": error_response("no or bad token"),
            },
        },
    },
    "/api/v1/alerts/{id}": {
        "get": {
            "summary": "One alert: state, resident card, ranked teams with reasons, deadlines, timeline",
            "parameters": [_id_param()],
            "responses": {
                "200": {
                    "description": "the alert",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "401": error_response("no or bad token"),
                "404": error_response("no such alert"),
            },
        }
    },
    "/api/v1/alerts/figures": {
        "get": {
            "summary": "Per-day figures (Asia/Shanghai): acknowledged in time, p50/p90 seconds, escalations",
            "parameters": [
                {"name": "days", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 366}}
            ],
            "responses": {
                "200": {
                    "description": "figures, today's live",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "400": error_response("a bad number of days"),
                "401": error_response("no or bad token"),
            },
        }
    },
}

for _name, (_, _summary, _fields) in ACTIONS.items():
    OPENAPI[f"/api/v1/alerts/{{id}}/{_name}"] = {
        "post": {
            "summary": _summary,
            "parameters": [_id_param()],
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": {"type": "object", "properties": _fields}}},
            },
            "responses": {
                "200": _ALERT_RESPONSE,
                "400": error_response("a bad or missing field"),
                "401": error_response("no or bad token"),
                "404": error_response("no such alert"),
                "409": error_response(
                    "the alert's state does not allow this action (the error names the state)"
                ),
            },
        }
    }

SCHEMAS: dict[str, Any] = {
    "Alert": {
        "type": "object",
        "required": ["id", "state", "kind", "raised_at"],
        "properties": {
            "id": {"type": "integer"},
            "state": {"type": "string", "enum": [s.value for s in AlertState]},
            "kind": {"type": "string", "enum": [k.value for k in AlertKind]},
            "outcome": {"type": ["string", "null"], "enum": [*(o.value for o in Outcome), None]},
            "resident_id": {"type": ["integer", "null"]},
            "team_id": {"type": ["integer", "null"]},
            "raised_at": {"type": "string", "format": "date-time"},
            "escalations": {"type": "integer"},
        },
    }
}
