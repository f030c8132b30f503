"""`/api/v1/teams` writes: create, edit, suspend, reactivate emergency teams.

Creating and editing are for administrators, suspending and reactivating for
supervisors too. A suspended team drops out of team choice at once (it ranks
only `active` teams). A PATCH names only what it changes; `members`,
`districts` and `roster` are whole lists that replace the stored ones. The
same PATCH twice changes nothing and writes no event the second time. Every
bad field, nested ones by position (`members[1].phone`), is named in one 400.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dispatch.api import teams
from dispatch.api.auth import current_user
from dispatch.api.bodies import json_object
from dispatch.api.errors import ApiError, not_found, ok
from dispatch.api.keys import RUNTIME
from dispatch.api.openapi import error_response
from dispatch.api.registry_writes import (
    ID_PARAMETER,
    INVALID_SCHEMA,
    STATUS_CHANGE_SCHEMA,
    FieldReader,
    actor_of,
    change_status,
    invalid,
    invalid_response,
    json_body,
    path_id,
    status_operation,
)
from dispatch.api.teams import CARD, UNAUTHORISED, team_card_json
from dispatch.database import Conn
from dispatch.phones import PhoneBook
from dispatch.users import Role
from dispatch.validation import InvalidInput, clean
from providers.suspension import Subject
from providers.team_admin import TeamExists, check_districts, create_team, save_team_edit, team_for_edit
from providers.team_input import MemberEntry, SlotEntry, build_team
from providers.teams import TeamCard, TeamInput, TeamStatus

routes = web.RouteTableDef()

EDIT_FIELDS = ("name", "phone", "base_lat", "base_lon", "address", "districts", "members", "roster", "reason")
CREATE_FIELDS = ("code", *EDIT_FIELDS)


def _district_refs(reader: FieldReader) -> list[str | int]:
    refs: list[str | int] = []
    for n, value in enumerate(reader.array("districts")):
        if isinstance(value, int) and not isinstance(value, bool):
            refs.append(value)
        else:
            text = reader.entry_text("districts", value, n)
            if text is not None:
                refs.append(text)
    return refs


def _members(reader: FieldReader) -> list[MemberEntry]:
    return [
        MemberEntry(entry.text("name"), entry.text("phone"), entry.text("role", max_length=20))
        for entry in reader.entries("members", {"name", "phone", "role"})
    ]


def _roster(reader: FieldReader) -> list[SlotEntry]:
    slots: list[SlotEntry] = []
    for entry in reader.entries("roster", {"weekday", "starts", "ends"}):
        weekday = entry.whole("weekday")
        # A bad weekday reads as "" so that the slot keeps its place; its error is already recorded.
        slots.append(
            SlotEntry(
                weekday if weekday is not None else "",
                entry.text("starts", max_length=8),
                entry.text("ends", max_length=8),
            )
        )
    return slots


async def read_team(conn: Conn, book: PhoneBook, reader: FieldReader, stored: TeamCard | None) -> TeamInput:
    """The body over the stored team (or a new one), checked; a 400 naming every bad field."""
    old = stored.team if stored else None

    def given(name: str) -> bool:
        return stored is None or reader.has(name)

    def text(name: str, current: str | None) -> str:
        return reader.text(name) if given(name) else current or ""

    districts: list[str | int] = (
        _district_refs(reader) if given("districts") else list(stored.district_ids if stored else ())
    )
    members = (
        _members(reader)
        if given("members")
        else [MemberEntry(m.name, m.phone_e164, m.role.value) for m in (stored.members if stored else ())]
    )
    roster = (
        _roster(reader)
        if given("roster")
        else [
            SlotEntry(s.weekday, s.starts.isoformat(), s.ends.isoformat())
            for s in (stored.roster if stored else ())
        ]
    )
    team = reader.check(
        lambda: build_team(
            book,
            code=reader.text("code", max_length=16) if old is None else old.code,
            name=text("name", old.name if old else None),
            phone=text("phone", old.phone_e164 if old else None),
            base_lat=reader.number("base_lat") if given("base_lat") else old.base_lat if old else None,
            base_lon=reader.number("base_lon") if given("base_lon") else old.base_lon if old else None,
            address=text("address", old.address if old else None),
            status=old.status if old else TeamStatus.ACTIVE,
            districts=districts,
            members=members,
            roster=roster,
        )
    )
    try:
        await check_districts(
            conn, [str(d) if isinstance(d, int) else clean(d) for d in districts if d != ""]
        )
    except InvalidInput as exc:
        reader.merge(exc)
    reader.done()
    assert team is not None
    return team


@routes.post("/api/v1/teams")
async def create(request: web.Request) -> web.Response:
    user = current_user(request, Role.ADMIN)
    runtime = request.app[RUNTIME]
    reader = FieldReader(await json_object(request, empty_ok=False), CREATE_FIELDS)
    reason = reader.text("reason", max_length=500)
    async with runtime.pool.acquire() as conn:
        team = await read_team(conn, runtime.phones, reader, None)
        try:
            saved, event = await create_team(conn, team, actor=actor_of(user), reason=reason)
        except TeamExists as exc:
            raise ApiError(409, "exists", str(exc), id=exc.team_id) from None
        except InvalidInput as exc:
            raise invalid(exc) from None
        body = await team_card_json(conn, runtime, saved.id)
    await runtime.bus.publish(event)
    response = ok(body, status=201)
    response.headers["Location"] = f"/api/v1/teams/{saved.id}"
    return response


@routes.patch(r"/api/v1/teams/{id:\d+}")
async def edit(request: web.Request) -> web.Response:
    user = current_user(request, Role.ADMIN)
    runtime = request.app[RUNTIME]
    team_id = path_id(request, "team")
    reader = FieldReader(await json_object(request), EDIT_FIELDS)
    reason = reader.text("reason", max_length=500)
    async with runtime.pool.acquire() as conn:
        async with conn.transaction():
            before = await team_for_edit(conn, team_id)
            if before is None:
                raise not_found("team")
            after = await read_team(conn, runtime.phones, reader, before)
            try:
                _, event = await save_team_edit(conn, before, after, actor=actor_of(user), reason=reason)
            except InvalidInput as exc:
                # upsert_team checks again what read_team checked: only a race gets here
                raise invalid(exc) from None
        body = await team_card_json(conn, runtime, team_id)
    if event is not None:
        await runtime.bus.publish(event)
    return ok(body)


@routes.post(r"/api/v1/teams/{id:\d+}/suspend")
async def suspend_team(request: web.Request) -> web.Response:
    return await change_status(request, Subject.TEAM, "suspend", team_card_json)


@routes.post(r"/api/v1/teams/{id:\d+}/reactivate")
async def reactivate_team(request: web.Request) -> web.Response:
    return await change_status(request, Subject.TEAM, "reactivate", team_card_json)


_SLOT_IN: dict[str, Any] = {**teams.SLOT, "additionalProperties": False}
_MEMBER_IN: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "phone"],
    "properties": {
        "name": {"type": "string", "maxLength": 200},
        "phone": {"type": "string", "maxLength": 200, "description": "a mobile in any common form"},
        "role": {"type": "string", "enum": ["leader", "member", "队长", "队员"], "default": "member"},
    },
}
_TEXT: dict[str, Any] = {"type": ["string", "null"], "maxLength": 200}
_EDIT_PROPERTIES: dict[str, Any] = {
    "name": {**_TEXT, "description": "required on create"},
    "phone": {**_TEXT, "description": "the duty phone in any common form; required on create"},
    "base_lat": {"type": "number", "minimum": -90, "maximum": 90},
    "base_lon": {"type": "number", "minimum": -180, "maximum": 180},
    "address": _TEXT,
    "districts": {
        "type": ["array", "null"],
        "description": "districts covered, by name, code or id (the list replaces the stored one)",
        "items": {"oneOf": [{"type": "string", "maxLength": 200}, {"type": "integer", "minimum": 1}]},
    },
    "members": {"type": ["array", "null"], "items": _MEMBER_IN, "description": "replaces the stored list"},
    "roster": {
        "type": ["array", "null"],
        "items": _SLOT_IN,
        "description": "replaces the stored roster",
    },
    "reason": {"type": "string", "maxLength": 500, "description": "why, for the event log"},
}

SCHEMAS: dict[str, Any] = {
    "InvalidRecord": INVALID_SCHEMA,
    "StatusChange": STATUS_CHANGE_SCHEMA,
    "TeamCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["code", "name", "phone", "base_lat", "base_lon"],
        "properties": {
            "code": {"type": "string", "maxLength": 16, "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,15}$"},
            **_EDIT_PROPERTIES,
        },
    },
    "TeamEdit": {
        "type": "object",
        "additionalProperties": False,
        "description": "only the fields to change; the code identifies the team and stays",
        "properties": _EDIT_PROPERTIES,
    },
}

_DENIED = error_response("needs the admin role")

# build_app keeps one entry per path, so the GETs that share these paths are declared again here.
OPENAPI: dict[str, Any] = {
    "/api/v1/teams": {
        **teams.OPENAPI["/api/v1/teams"],
        "post": {
            "summary": "Register an emergency team (administrators)",
            "operationId": "createTeam",
            "tags": ["teams"],
            "requestBody": json_body("TeamCreate", "the team; it starts active"),
            "responses": {
                "201": {"description": "registered; the card", "content": CARD},
                "400": invalid_response("bad fields, every one named in `error.fields`"),
                "401": UNAUTHORISED,
                "403": _DENIED,
                "409": error_response("a team with this code exists; `error.id` is it"),
            },
        },
    },
    "/api/v1/teams/{id}": {
        **teams.OPENAPI["/api/v1/teams/{id}"],
        "patch": {
            "summary": "Change some of a team's fields (administrators); the same body twice changes "
            "nothing the second time",
            "operationId": "editTeam",
            "tags": ["teams"],
            "parameters": [ID_PARAMETER],
            "requestBody": json_body("TeamEdit", "the fields to change"),
            "responses": {
                "200": {"description": "the card as it is now", "content": CARD},
                "400": invalid_response("bad fields, every one named in `error.fields`"),
                "401": UNAUTHORISED,
                "403": _DENIED,
                "404": error_response("no such team"),
            },
        },
    },
    "/api/v1/teams/{id}/suspend": status_operation(Subject.TEAM, "suspend", "TeamCard"),
    "/api/v1/teams/{id}/reactivate": status_operation(Subject.TEAM, "reactivate", "TeamCard"),
}
