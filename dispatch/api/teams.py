"""`/api/v1/teams`: emergency teams (应急服务队): list, read, create, edit, suspend, reactivate.

Reading is for every signed-in user; creating and editing for administrators;
suspending and reactivating for supervisors too. A suspended team drops out of
team choice at once (it ranks only `active` teams). A PATCH names only what it
changes; `members`, `districts` and `roster` are whole lists that replace the
stored ones. Roster slots are weekly in local time (weekday 1 = Monday), and
one whose end is not after its start runs past midnight (Fri 20:00-08:00).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dispatch.api.auth import current_user
from dispatch.api.bodies import json_object
from dispatch.api.errors import ApiError, bad_request, not_found, ok
from dispatch.api.keys import RUNTIME
from dispatch.api.openapi import error_response
from dispatch.api.paging import PAGING_PARAMETERS, page, page_params, page_schema, query_text, text_parameter
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
from dispatch.database import Conn
from dispatch.geography import PlaceError, resolve_district
from dispatch.phones import PhoneBook
from dispatch.runtime import Runtime
from dispatch.users import Role
from dispatch.validation import InvalidInput, clean
from providers.suspension import Subject
from providers.team_admin import (
    TeamDistrict,
    TeamExists,
    TeamSummary,
    check_districts,
    create_team,
    district_names,
    save_team_edit,
    search_teams,
    team_for_edit,
)
from providers.team_input import MemberEntry, SlotEntry, build_team
from providers.teams import EmergencyTeam, TeamCard, TeamInput, TeamStatus, get_team

routes = web.RouteTableDef()

EDIT_FIELDS = ("name", "phone", "base_lat", "base_lon", "address", "districts", "members", "roster", "reason")
CREATE_FIELDS = ("code", *EDIT_FIELDS)


def _districts_json(districts: tuple[TeamDistrict, ...]) -> list[dict[str, Any]]:
    return [{"id": d.id, "name": d.name} for d in districts]


def team_json(team: EmergencyTeam, districts: tuple[TeamDistrict, ...], book: PhoneBook) -> dict[str, Any]:
    return {
        "id": team.id,
        "code": team.code,
        "name": team.name,
        "phone": team.phone_e164,
        "phone_display": book.national(team.phone_e164),
        "base_lat": team.base_lat,
        "base_lon": team.base_lon,
        "address": team.address,
        "status": team.status.value,
        "districts": _districts_json(districts),
        "created_at": team.created_at.isoformat(),
    }


def card_json(card: TeamCard, districts: tuple[TeamDistrict, ...], book: PhoneBook) -> dict[str, Any]:
    return {
        **team_json(card.team, districts, book),
        "members": [
            {
                "name": m.name,
                "role": m.role.value,
                "phone": m.phone_e164,
                "phone_display": book.national(m.phone_e164),
            }
            for m in card.members
        ],
        "roster": [
            {
                "weekday": s.weekday,
                "starts": s.starts.isoformat(timespec="minutes"),
                "ends": s.ends.isoformat(timespec="minutes"),
            }
            for s in card.roster
        ],
    }


async def team_card_json(conn: Conn, runtime: Runtime, team_id: int) -> dict[str, Any] | None:
    card = await get_team(conn, team_id)
    if card is None:
        return None
    return card_json(card, await district_names(conn, card.district_ids), runtime.phones)


def _summary_json(summary: TeamSummary, book: PhoneBook) -> dict[str, Any]:
    return team_json(summary.team, summary.districts, book)


@routes.get("/api/v1/teams")
async def list_teams(request: web.Request) -> web.Response:
    current_user(request)
    runtime = request.app[RUNTIME]
    limit, offset = page_params(request.query)
    status_text = query_text(request.query, "status")
    district = query_text(request.query, "district")
    status = None
    if status_text is not None:
        if status_text not in set(TeamStatus):
            raise bad_request("status", f"expected one of {', '.join(TeamStatus)}")
        status = TeamStatus(status_text)
    async with runtime.pool.acquire() as conn:
        district_id = None
        if district is not None:
            try:
                district_id = (await resolve_district(conn, district)).id
            except PlaceError as exc:
                raise bad_request("district", str(exc)) from None
        rows, total = await search_teams(
            conn, status=status, district_id=district_id, limit=limit, offset=offset
        )
    return ok(page([_summary_json(s, runtime.phones) for s in rows], total, limit, offset))


@routes.get(r"/api/v1/teams/{id:\d+}")
async def team_card(request: web.Request) -> web.Response:
    current_user(request)
    runtime = request.app[RUNTIME]
    team_id = path_id(request, "team")
    async with runtime.pool.acquire() as conn:
        body = await team_card_json(conn, runtime, team_id)
    if body is None:
        raise not_found("team")
    return ok(body)


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


_TEAM_PROPERTIES: dict[str, Any] = {
    "id": {"type": "integer"},
    "code": {"type": "string", "description": "short code, used in SMS and on the timeline (XC01)"},
    "name": {"type": "string"},
    "phone": {"type": "string", "description": "the duty phone, E.164"},
    "phone_display": {"type": "string"},
    "base_lat": {"type": "number"},
    "base_lon": {"type": "number"},
    "address": {"type": "string"},
    "status": {"type": "string", "enum": list(TeamStatus)},
    "districts": {
        "type": "array",
        "description": "districts covered",
        "items": {
            "type": "object",
            "required": ["id", "name"],
            "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
        },
    },
    "created_at": {"type": "string", "format": "date-time"},
}
_SLOT: dict[str, Any] = {
    "type": "object",
    "required": ["weekday", "starts", "ends"],
    "properties": {
        "weekday": {"type": "integer", "minimum": 1, "maximum": 7, "description": "1 = Monday … 7 = Sunday"},
        "starts": {"type": "string", "pattern": r"^\d{2}:\d{2}(:\d{2})?$", "examples": ["08:00"]},
        "ends": {
            "type": "string",
            "pattern": r"^\d{2}:\d{2}(:\d{2})?$",
            "description": "not after `starts`: past midnight into the next day",
        },
    },
}
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
        "items": {**_SLOT, "additionalProperties": False},
        "description": "replaces the stored roster",
    },
    "reason": {"type": "string", "maxLength": 500, "description": "why, for the event log"},
}

SCHEMAS: dict[str, Any] = {
    "InvalidRecord": INVALID_SCHEMA,
    "StatusChange": STATUS_CHANGE_SCHEMA,
    "Team": {
        "type": "object",
        "required": ["id", "code", "name", "phone", "base_lat", "base_lon", "status", "districts"],
        "properties": _TEAM_PROPERTIES,
    },
    "TeamPage": page_schema("Team"),
    "TeamCard": {
        "type": "object",
        "required": ["id", "code", "name", "phone", "status", "districts", "members", "roster"],
        "properties": {
            **_TEAM_PROPERTIES,
            "members": {
                "type": "array",
                "description": "the leader first",
                "items": {
                    "type": "object",
                    "required": ["name", "role", "phone"],
                    "properties": {
                        "name": {"type": "string"},
                        "role": {"type": "string", "enum": ["leader", "member"]},
                        "phone": {"type": "string", "description": "E.164"},
                        "phone_display": {"type": "string"},
                    },
                },
            },
            "roster": {"type": "array", "description": "weekly duty slots, local time", "items": _SLOT},
        },
    },
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

_CARD = {"application/json": {"schema": {"$ref": "#/components/schemas/TeamCard"}}}
_UNAUTHORISED = error_response("no or an invalid bearer token")
_DENIED = error_response("needs the admin role")

OPENAPI: dict[str, Any] = {
    "/api/v1/teams": {
        "get": {
            "summary": "List emergency teams by code, filtered by status and district covered",
            "operationId": "listTeams",
            "tags": ["teams"],
            "parameters": [
                {"name": "status", "in": "query", "schema": {"type": "string", "enum": list(TeamStatus)}},
                text_parameter("district", "a district id, code or name: teams covering it"),
                *PAGING_PARAMETERS,
            ],
            "responses": {
                "200": {
                    "description": "a page of teams",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TeamPage"}}},
                },
                "400": error_response("a query parameter is wrong; `error.field` names it"),
                "401": _UNAUTHORISED,
            },
        },
        "post": {
            "summary": "Register an emergency team (administrators)",
            "operationId": "createTeam",
            "tags": ["teams"],
            "requestBody": json_body("TeamCreate", "the team; it starts active"),
            "responses": {
                "201": {"description": "registered; the card", "content": _CARD},
                "400": invalid_response("bad fields, every one named in `error.fields`"),
                "401": _UNAUTHORISED,
                "403": _DENIED,
                "409": error_response("a team with this code exists; `error.id` is it"),
            },
        },
    },
    "/api/v1/teams/{id}": {
        "get": {
            "summary": "A team with its districts, members and duty roster",
            "operationId": "getTeam",
            "tags": ["teams"],
            "parameters": [ID_PARAMETER],
            "responses": {
                "200": {"description": "the team", "content": _CARD},
                "401": _UNAUTHORISED,
                "404": error_response("no such team"),
            },
        },
        "patch": {
            "summary": "Change some of a team's fields (administrators); the same body twice changes "
            "nothing the second time",
            "operationId": "editTeam",
            "tags": ["teams"],
            "parameters": [ID_PARAMETER],
            "requestBody": json_body("TeamEdit", "the fields to change"),
            "responses": {
                "200": {"description": "the card as it is now", "content": _CARD},
                "400": invalid_response("bad fields, every one named in `error.fields`"),
                "401": _UNAUTHORISED,
                "403": _DENIED,
                "404": error_response("no such team"),
            },
        },
    },
    "/api/v1/teams/{id}/suspend": status_operation(Subject.TEAM, "suspend", "TeamCard"),
    "/api/v1/teams/{id}/reactivate": status_operation(Subject.TEAM, "reactivate", "TeamCard"),
}
