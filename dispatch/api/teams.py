"""`/api/v1/teams`: emergency teams (应急服务队), listed and read by every signed-in user.

A team's card shows its districts, members (the leader first) and weekly duty
roster in local time (weekday 1 = Monday; a slot whose end is not after its
start runs past midnight, Fri 20:00-08:00). Creating, editing, suspending and
reactivating are in `team_admin`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dispatch.api.auth import current_user
from dispatch.api.errors import bad_request, not_found, ok
from dispatch.api.keys import RUNTIME
from dispatch.api.openapi import error_response
from dispatch.api.paging import PAGING_PARAMETERS, page, page_params, page_schema, query_text, text_parameter
from dispatch.api.registry_writes import ID_PARAMETER, path_id
from dispatch.database import Conn
from dispatch.geography import PlaceError, resolve_district
from dispatch.phones import PhoneBook
from dispatch.runtime import Runtime
from providers.team_admin import TeamDistrict, TeamSummary, district_names, search_teams
from providers.teams import EmergencyTeam, TeamCard, TeamStatus, get_team

routes = web.RouteTableDef()


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
SLOT: dict[str, Any] = {
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
SCHEMAS: dict[str, Any] = {
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
            "roster": {"type": "array", "description": "weekly duty slots, local time", "items": SLOT},
        },
    },
}

CARD = {"application/json": {"schema": {"$ref": "#/components/schemas/TeamCard"}}}
UNAUTHORISED = error_response("no or an invalid bearer token")

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
                "401": UNAUTHORISED,
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
                "200": {"description": "the team", "content": CARD},
                "401": UNAUTHORISED,
                "404": error_response("no such team"),
            },
        },
    },
}
