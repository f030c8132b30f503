"""`/api/v1/providers` writes: create, edit, suspend, reactivate.

Creating and editing are for administrators, suspending and reactivating for
supervisors too (it is how a floor takes a provider out of rotation tonight).
A PATCH names only the fields it changes; `null` sets a field back to its
default (no phone, no base, capacity 1). Sending the same PATCH again changes
nothing and writes no event. Areas are district or community names, codes or
paths (`新城区`, `新城区/海拉尔东路街道/幸福社区`), or `{"district_id": 1}` /
`{"community_id": 7}`. Every bad field is named in one 400.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dispatch.api import providers
from dispatch.api.auth import current_user
from dispatch.api.bodies import json_object
from dispatch.api.errors import ApiError, not_found, ok
from dispatch.api.keys import RUNTIME
from dispatch.api.openapi import error_response
from dispatch.api.providers import provider_card_json
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
    renamed,
    status_operation,
)
from dispatch.database import Conn
from dispatch.geography import SERIAL_MAX, get_district, place_of
from dispatch.phones import PhoneBook
from dispatch.users import Role
from dispatch.validation import InvalidInput
from providers.provider_admin import ProviderExists, create_provider, provider_for_edit, save_provider_edit
from providers.provider_input import ItemOffer, ProviderInput
from providers.registry import check_offer
from providers.suspension import Subject

routes = web.RouteTableDef()

EDIT_FIELDS = (
    "name",
    "contact_name",
    "phone",
    "sms",
    "address",
    "base_lat",
    "base_lon",
    "capacity",
    "items",
    "areas",
    "reason",
)
CREATE_FIELDS = ("licence_no", *EDIT_FIELDS)
# ProviderInput.build's names for fields the API spells otherwise.
_API_NAMES = {"lat": "base_lat", "lon": "base_lon"}
MAX_PRICE_FEN = 100_000_000  # a million yuan: anything above is a typo, and bigint must not overflow


def _items(reader: FieldReader) -> tuple[ItemOffer, ...]:
    offers: dict[str, ItemOffer] = {}
    for entry in reader.entries("items", {"code", "price_fen"}):
        code = entry.text("code", required=True, max_length=20).upper()
        price = entry.whole("price_fen")
        if price is not None and not 0 <= price <= MAX_PRICE_FEN:
            entry.reject("price_fen", f"expected fen from 0 to {MAX_PRICE_FEN}")
            continue
        if code in offers:
            reader.reject("items", f"item {code} is listed twice")
        elif code:
            offers[code] = ItemOffer(code, price)
    return tuple(offers.values())


async def _areas(conn: Conn, reader: FieldReader) -> tuple[str, ...]:
    """Areas as the registry resolves them: names and paths as given, ids turned into a district
    code or a community path (a bare number would be ambiguous between the two)."""
    areas: list[str] = []
    for n, value in enumerate(reader.array("areas")):
        at = f"areas[{n}]"
        if isinstance(value, dict) and len(value) == 1 and set(value) <= {"district_id", "community_id"}:
            key, ref = next(iter(value.items()))
            number = (
                ref if isinstance(ref, int) and not isinstance(ref, bool) and 0 < ref <= SERIAL_MAX else None
            )
            if key == "district_id":
                district = await get_district(conn, number) if number is not None else None
                if district is None:
                    reader.reject(at, f"no district with id {ref!r}")
                else:
                    areas.append(district.code)
            else:
                place = await place_of(conn, number) if number is not None else None
                if place is None:
                    reader.reject(at, f"no community with id {ref!r}")
                else:
                    areas.append(place.path)
        elif isinstance(value, dict):
            reader.fail(at, 'expected a name, {"district_id": n} or {"community_id": n}')
        else:
            text = reader.entry_text("areas", value, n)
            if text is not None:
                areas.append(text)
    return tuple(areas)


async def read_provider(
    conn: Conn, book: PhoneBook, reader: FieldReader, stored: ProviderInput | None
) -> ProviderInput:
    """The body over the stored provider (or a new one), checked; a 400 naming every bad field."""

    def text(name: str, current: str | None) -> str:
        return reader.text(name) if stored is None or reader.has(name) else current or ""

    def given(name: str) -> bool:
        return stored is None or reader.has(name)

    licence_no = reader.text("licence_no", max_length=30) if stored is None else stored.licence_no
    lat = reader.number("base_lat") if given("base_lat") else stored.base_lat if stored else None
    lon = reader.number("base_lon") if given("base_lon") else stored.base_lon if stored else None
    capacity = reader.whole("capacity") if given("capacity") else stored.capacity if stored else None
    items = _items(reader) if given("items") else stored.items if stored else ()
    areas = await _areas(conn, reader) if given("areas") else stored.areas if stored else ()

    def build() -> ProviderInput:
        try:
            return ProviderInput.build(
                book,
                licence_no=licence_no,
                name=text("name", stored.name if stored else None),
                sms=text("sms", stored.sms_e164 if stored else None),
                contact_name=text("contact_name", stored.contact_name if stored else None),
                phone=text("phone", stored.phone_e164 if stored else None),
                address=text("address", stored.address if stored else None),
                lat=lat,
                lon=lon,
                capacity=capacity,
                status=stored.status.value if stored else "",
                items=items,
                areas=areas,
            )
        except InvalidInput as exc:
            raise renamed(exc, _API_NAMES) from None

    provider = reader.check(build)
    # Unknown items and areas are found in the database; look now, so that one answer names them all.
    try:
        await check_offer(conn, items, areas)
    except InvalidInput as exc:
        reader.merge(exc)
    reader.done()
    assert provider is not None
    return provider


@routes.post("/api/v1/providers")
async def create(request: web.Request) -> web.Response:
    user = current_user(request, Role.ADMIN)
    runtime = request.app[RUNTIME]
    reader = FieldReader(await json_object(request, empty_ok=False), CREATE_FIELDS)
    reason = reader.text("reason", max_length=500)
    async with runtime.pool.acquire() as conn:
        provider = await read_provider(conn, runtime.phones, reader, None)
        try:
            saved, event = await create_provider(conn, provider, actor=actor_of(user), reason=reason)
        except ProviderExists as exc:
            raise ApiError(409, "exists", str(exc), id=exc.provider_id) from None
        except InvalidInput as exc:
            # upsert_provider checks again what read_provider checked: only a race gets here
            raise invalid(exc) from None
        body = await provider_card_json(conn, runtime, saved.id)
    await runtime.bus.publish(event)
    response = ok(body, status=201)
    response.headers["Location"] = f"/api/v1/providers/{saved.id}"
    return response


@routes.patch(r"/api/v1/providers/{id:\d+}")
async def edit(request: web.Request) -> web.Response:
    user = current_user(request, Role.ADMIN)
    runtime = request.app[RUNTIME]
    provider_id = path_id(request, "provider")
    reader = FieldReader(await json_object(request), EDIT_FIELDS)
    reason = reader.text("reason", max_length=500)
    async with runtime.pool.acquire() as conn:
        async with conn.transaction():
            before = await provider_for_edit(conn, provider_id)
            if before is None:
                raise not_found("provider")
            after = await read_provider(conn, runtime.phones, reader, before)
            try:
                _, event = await save_provider_edit(conn, before, after, actor=actor_of(user), reason=reason)
            except InvalidInput as exc:
                raise invalid(exc) from None
        body = await provider_card_json(conn, runtime, provider_id)
    if event is not None:
        await runtime.bus.publish(event)
    return ok(body)


@routes.post(r"/api/v1/providers/{id:\d+}/suspend")
async def suspend_provider(request: web.Request) -> web.Response:
    return await change_status(request, Subject.PROVIDER, "suspend", provider_card_json)


@routes.post(r"/api/v1/providers/{id:\d+}/reactivate")
async def reactivate_provider(request: web.Request) -> web.Response:
    return await change_status(request, Subject.PROVIDER, "reactivate", provider_card_json)


_TEXT: dict[str, Any] = {"type": ["string", "null"], "maxLength": 200}
_EDIT_PROPERTIES: dict[str, Any] = {
    "name": {**_TEXT, "description": "required on create"},
    "contact_name": _TEXT,
    "phone": {**_TEXT, "description": "a landline or mobile in any common form"},
    "sms": {**_TEXT, "description": "the mobile job offers are texted to; required on create"},
    "address": _TEXT,
    "base_lat": {"type": ["number", "null"], "minimum": -90, "maximum": 90},
    "base_lon": {"type": ["number", "null"], "minimum": -180, "maximum": 180},
    "capacity": {"type": ["integer", "null"], "minimum": 0, "maximum": 10_000, "description": "default 1"},
    "items": {
        "type": ["array", "null"],
        "description": "the items offered (all of them: the list replaces the stored one)",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["code"],
            "properties": {
                "code": {"type": "string", "maxLength": 20, "examples": ["HK01"]},
                "price_fen": {
                    "type": ["integer", "null"],
                    "minimum": 0,
                    "maximum": MAX_PRICE_FEN,
                    "description": "this provider's price; absent: the catalogue's list price",
                },
            },
        },
    },
    "areas": {
        "type": ["array", "null"],
        "description": "districts and communities served (all of them: the list replaces the stored one)",
        "items": {
            "oneOf": [
                {
                    "type": "string",
                    "maxLength": 200,
                    "description": "a district name or code, a community name or district/street/community",
                },
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["district_id"],
                    "properties": {"district_id": {"type": "integer", "minimum": 1}},
                },
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["community_id"],
                    "properties": {"community_id": {"type": "integer", "minimum": 1}},
                },
            ]
        },
    },
    "reason": {"type": "string", "maxLength": 500, "description": "why, for the event log"},
}

SCHEMAS: dict[str, Any] = {
    "InvalidRecord": INVALID_SCHEMA,
    "StatusChange": STATUS_CHANGE_SCHEMA,
    "ProviderCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["licence_no", "name", "sms"],
        "properties": {
            "licence_no": {
                "type": "string",
                "maxLength": 30,
                "description": "统一社会信用代码 (check character verified) or a 15-digit licence number",
            },
            **_EDIT_PROPERTIES,
        },
    },
    "ProviderEdit": {
        "type": "object",
        "additionalProperties": False,
        "description": "only the fields to change; the licence number identifies the provider and stays",
        "properties": _EDIT_PROPERTIES,
    },
}

_CARD = {"application/json": {"schema": {"$ref": "#/components/schemas/ProviderCard"}}}
_DENIED = error_response("needs the admin role")

# build_app keeps one entry per path, so the GETs that share these paths are declared again here.
OPENAPI: dict[str, Any] = {
    "/api/v1/providers": {
        **providers.OPENAPI["/api/v1/providers"],
        "post": {
            "summary": "Register a provider (administrators)",
            "operationId": "createProvider",
            "tags": ["providers"],
            "requestBody": json_body("ProviderCreate", "the provider; it starts active"),
            "responses": {
                "201": {"description": "registered; the card", "content": _CARD},
                "400": invalid_response("bad fields, every one named in `error.fields`"),
                "401": error_response("no or an invalid bearer token"),
                "403": _DENIED,
                "409": error_response("a provider with this licence number exists; `error.id` is it"),
            },
        },
    },
    "/api/v1/providers/{id}": {
        **providers.OPENAPI["/api/v1/providers/{id}"],
        "patch": {
            "summary": "Change some of a provider's fields (administrators); the same body twice changes "
            "nothing the second time",
            "operationId": "editProvider",
            "tags": ["providers"],
            "parameters": [ID_PARAMETER],
            "requestBody": json_body("ProviderEdit", "the fields to change"),
            "responses": {
                "200": {"description": "the card as it is now", "content": _CARD},
                "400": invalid_response("bad fields, every one named in `error.fields`"),
                "401": error_response("no or an invalid bearer token"),
                "403": _DENIED,
                "404": error_response("no such provider"),
            },
        },
    },
    "/api/v1/providers/{id}/suspend": status_operation(Subject.PROVIDER, "suspend", "ProviderCard"),
    "/api/v1/providers/{id}/reactivate": status_operation(Subject.PROVIDER, "reactivate", "ProviderCard"),
}
