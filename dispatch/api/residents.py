"""`/api/v1/residents`: search residents and read a resident's card.

ID numbers are always masked. An administrator may ask for the clear value of
one resident with `?reveal=id_number`; the response then carries `id_number`
as well, and the look is written to the event log. Anyone else asking gets 403.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from dispatch.api.auth import current_user
from dispatch.api.errors import ApiError, bad_request, not_found, ok
from dispatch.api.keys import RUNTIME
from dispatch.api.openapi import error_response
from dispatch.api.paging import PAGING_PARAMETERS, page, page_params, page_schema, query_text, text_parameter
from dispatch.devices import Device
from dispatch.geography import BIGSERIAL_MAX, PlaceError, as_id
from dispatch.phones import PhoneBook, PhoneNumberError
from dispatch.resident_access import log_resident_access
from dispatch.resident_input import age_on
from dispatch.residents import (
    ResidentCard,
    ResidentSummary,
    get_resident,
    reveal_id_number,
    search_residents,
)
from dispatch.users import Role

routes = web.RouteTableDef()


def summary_json(resident: ResidentSummary, today: dt.date) -> dict[str, Any]:
    return {
        "id": resident.id,
        "name": resident.name,
        "sex": resident.sex.value,
        "birth_date": resident.birth_date.isoformat(),
        "age": age_on(resident.birth_date, today),
        "id_number_masked": resident.id_number_masked,
        "address": resident.address,
        "community_id": resident.community_id,
        "community": resident.community,
        "district": resident.district,
        "living_situation": resident.living_situation.value,
        "phones": list(resident.phones),
        "active": resident.active,
    }


def device_json(device: Device) -> dict[str, Any]:
    return {
        "id": device.id,
        "serial": device.serial,
        "kind": device.kind.value,
        "status": device.status.value,
        "caller": device.caller_e164,
        "dc09_account": device.dc09_account,
        "cloud_id": device.cloud_id,
        "heartbeat_interval_s": device.heartbeat_interval_s,
        "last_seen_at": device.last_seen_at.isoformat() if device.last_seen_at else None,
        "battery_percent": device.battery_percent,
    }


def card_json(card: ResidentCard, book: PhoneBook, today: dt.date) -> dict[str, Any]:
    r = card.resident
    place = card.place
    return {
        "id": r.id,
        "name": r.name,
        "sex": r.sex.value,
        "birth_date": r.birth_date.isoformat(),
        "age": r.age_on(today),
        "id_number_masked": r.id_number_masked,
        "address": r.address,
        "place": None
        if place is None
        else {
            "community_id": place.community_id,
            "community": place.community,
            "street_id": place.street_id,
            "street": place.street,
            "district_id": place.district_id,
            "district": place.district,
        },
        "lat": r.lat,
        "lon": r.lon,
        "living_situation": r.living_situation.value,
        "language": r.language.value,
        "chronic_conditions": r.chronic_conditions,
        "medication": r.medication,
        "allergies": r.allergies,
        "mobility": r.mobility,
        "cognition": r.cognition,
        "notes": r.notes,
        "subsidy_programme": r.subsidy_programme,
        "subsidy_programme_name": card.subsidy_programme_name,
        "monthly_allowance_fen": r.monthly_allowance_fen,
        "phones": [
            {"e164": p.e164, "kind": p.kind.value, "display": book.national(p.e164)} for p in card.phones
        ],
        "emergency_contacts": [
            {
                "position": c.position,
                "name": c.name,
                "relation": c.relation,
                "phone": c.phone_e164,
                "display": book.national(c.phone_e164),
            }
            for c in card.contacts
        ],
        "devices": [device_json(d) for d in card.devices],
        "active": r.active,
        "created_at": r.created_at.isoformat(),
        "updated_at": r.updated_at.isoformat(),
    }


@routes.get("/api/v1/residents")
async def list_residents(request: web.Request) -> web.Response:
    current_user(request)
    runtime = request.app[RUNTIME]
    limit, offset = page_params(request.query)
    name = query_text(request.query, "q")
    phone = query_text(request.query, "phone")
    community = query_text(request.query, "community")
    today = runtime.clock().astimezone(runtime.tz).date()
    async with runtime.pool.acquire() as conn:
        try:
            rows, total = await search_residents(
                conn,
                runtime.phones,
                name_fragment=name,
                phone=phone,
                community=community,
                limit=limit,
                offset=offset,
            )
        except PhoneNumberError as exc:
            raise bad_request("phone", str(exc)) from None
        except PlaceError as exc:
            raise bad_request("community", str(exc)) from None
    return ok(page([summary_json(r, today) for r in rows], total, limit, offset))


@routes.get(r"/api/v1/residents/{id:\d+}")
async def resident_card(request: web.Request) -> web.Response:
    user = current_user(request)
    runtime = request.app[RUNTIME]
    reveal = request.query.get("reveal")
    if reveal not in (None, "id_number"):
        raise bad_request("reveal", "the only value is id_number")
    if reveal and not user.may(Role.ADMIN):
        raise ApiError(403, "forbidden", "only an administrator may see a full ID number")
    resident_id = as_id(request.match_info["id"], BIGSERIAL_MAX)
    if resident_id is None:
        raise not_found("resident")
    today = runtime.clock().astimezone(runtime.tz).date()
    async with runtime.pool.acquire() as conn:
        card = await get_resident(conn, resident_id)
        if card is None:
            raise not_found("resident")
        await log_resident_access(conn, request, user, resident_id, via="api")
        body = card_json(card, runtime.phones, today)
        if reveal:
            body["id_number"] = await reveal_id_number(
                conn, resident_id, user, reason="API ?reveal=id_number"
            )
    return ok(body)


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


_LIVING = {"type": "string", "enum": ["alone", "empty_nest", "with_family"]}

SCHEMAS: dict[str, Any] = {
    "ResidentSummary": {
        "type": "object",
        "required": ["id", "name", "sex", "birth_date", "age", "id_number_masked", "phones", "active"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "sex": {"type": "string", "enum": ["M", "F"]},
            "birth_date": {"type": "string", "format": "date"},
            "age": {"type": "integer"},
            "id_number_masked": {"type": "string", "examples": ["150102********1245"]},
            "address": {"type": "string"},
            "community_id": _nullable("integer"),
            "community": _nullable("string"),
            "district": _nullable("string"),
            "living_situation": _LIVING,
            "phones": {"type": "array", "items": {"type": "string", "description": "E.164"}},
            "active": {"type": "boolean"},
        },
    },
    "ResidentPage": page_schema("ResidentSummary"),
    "Device": {
        "type": "object",
        "required": ["id", "serial", "kind", "status"],
        "properties": {
            "id": {"type": "integer"},
            "serial": {"type": "string"},
            "kind": {"type": "string", "enum": ["home_unit", "pendant", "smoke", "gas", "door", "water"]},
            "status": {"type": "string", "enum": ["active", "maintenance", "retired"]},
            "caller": _nullable("string", description="E.164 number the device calls from"),
            "dc09_account": _nullable("string"),
            "cloud_id": _nullable("string"),
            "heartbeat_interval_s": {"type": "integer"},
            "last_seen_at": _nullable("string", format="date-time"),
            "battery_percent": _nullable("integer"),
        },
    },
    "ResidentCard": {
        "type": "object",
        "required": ["id", "name", "sex", "birth_date", "id_number_masked", "phones", "emergency_contacts"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "sex": {"type": "string", "enum": ["M", "F"]},
            "birth_date": {"type": "string", "format": "date"},
            "age": {"type": "integer"},
            "id_number_masked": {"type": "string"},
            "id_number": {
                "type": "string",
                "description": "the clear ID number; only with ?reveal=id_number, for an administrator",
            },
            "address": {"type": "string"},
            "place": {
                "type": ["object", "null"],
                "properties": {
                    "community_id": {"type": "integer"},
                    "community": {"type": "string"},
                    "street_id": {"type": "integer"},
                    "street": {"type": "string"},
                    "district_id": {"type": "integer"},
                    "district": {"type": "string"},
                },
            },
            "lat": _nullable("number"),
            "lon": _nullable("number"),
            "living_situation": _LIVING,
            "language": {"type": "string", "enum": ["zh", "mn"]},
            "chronic_conditions": {"type": "string"},
            "medication": {"type": "string"},
            "allergies": {"type": "string"},
            "mobility": {"type": "string"},
            "cognition": {"type": "string"},
            "notes": {"type": "string"},
            "subsidy_programme": _nullable("string"),
            "subsidy_programme_name": _nullable("string"),
            "monthly_allowance_fen": _nullable("integer", description="overrides the programme's allowance"),
            "phones": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["e164", "kind"],
                    "properties": {
                        "e164": {"type": "string"},
                        "kind": {"type": "string", "enum": ["mobile", "landline"]},
                        "display": {"type": "string"},
                    },
                },
            },
            "emergency_contacts": {
                "type": "array",
                "description": "in the order they are called",
                "items": {
                    "type": "object",
                    "required": ["position", "name", "phone"],
                    "properties": {
                        "position": {"type": "integer", "minimum": 1},
                        "name": {"type": "string"},
                        "relation": {"type": "string"},
                        "phone": {"type": "string", "description": "E.164"},
                        "display": {"type": "string"},
                    },
                },
            },
            "devices": {"type": "array", "items": {"$ref": "#/components/schemas/Device"}},
            "active": {"type": "boolean"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
}


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}


OPENAPI: dict[str, Any] = {
    "/api/v1/residents": {
        "get": {
            "summary": "Search residents by name fragment, phone (any form) and community",
            "operationId": "listResidents",
            "tags": ["residents"],
            "parameters": [
                text_parameter("q", "part of the name (王秀 finds 王秀兰)"),
                text_parameter(
                    "phone",
                    "a phone number in any form (0471-6912345, 6912345, +86 138 0013 8000); "
                    "matches the resident's phones and devices",
                ),
                text_parameter(
                    "community",
                    "a community id, name (every community of that name) or district/street/community",
                ),
                *PAGING_PARAMETERS,
            ],
            "responses": {
                "200": {
                    "description": "a page of residents, ID numbers masked",
                    "content": _json("ResidentPage"),
                },
                "400": error_response("a query parameter is wrong; `error.field` names it"),
                "401": error_response("no or an invalid bearer token"),
            },
        }
    },
    "/api/v1/residents/{id}": {
        "get": {
            "summary": "A resident's card: place, phones, emergency contacts, health notes, devices",
            "operationId": "getResident",
            "tags": ["residents"],
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}},
                {
                    "name": "reveal",
                    "in": "query",
                    "description": "`id_number`: include the clear ID number (administrators only; logged)",
                    "schema": {"type": "string", "enum": ["id_number"]},
                },
            ],
            "responses": {
                "200": {"description": "the card", "content": _json("ResidentCard")},
                "400": error_response("a query parameter is wrong"),
                "401": error_response("no or an invalid bearer token"),
                "403": error_response("reveal asked for by someone who is not an administrator"),
                "404": error_response("no such resident"),
            },
        }
    },
}
