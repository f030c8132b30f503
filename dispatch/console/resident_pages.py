"""Residents on the console: search, a resident's page, and the form to create or edit one.

Search runs `search_residents` (what `GET /api/v1/residents` runs); the form
checks its fields with `ResidentInput.build` and saves with `upsert_resident`
(what the spreadsheet import uses), so a field the domain refuses is marked
next to its box with the domain's own reason. Opening a resident's page or
edit form is written to the access log. Creating and editing are for
administrators (they manage the register); everyone signed in may search and read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiohttp import web

from dispatch.alerts import list_alerts
from dispatch.api.bodies import storable_text
from dispatch.api.keys import RUNTIME, USER
from dispatch.console.i18n import _N
from dispatch.console.pages import gettext_for, page, render
from dispatch.database import Conn
from dispatch.geography import PlaceError
from dispatch.orders import list_orders
from dispatch.phones import PhoneNumberError
from dispatch.resident_access import log_resident_access
from dispatch.resident_input import MAX_CONTACTS, Language, LivingSituation, PhoneKind, ResidentInput, age_on
from dispatch.residents import get_resident, resident_input_of, search_residents, upsert_resident
from dispatch.subsidies import list_subsidy_programmes
from dispatch.users import Role, User
from dispatch.validation import Checker, InvalidInput, clean, normalise_phones, parse_yuan, split_list
from telephony.call_records import list_calls

routes = web.RouteTableDef()

PAGE_SIZE = 50
RECENT = 10
FORM_CONTACTS = 3
assert FORM_CONTACTS <= MAX_CONTACTS

ALREADY_REGISTERED = _N("a resident with this ID number is already registered")
# PostgreSQL cannot store a NUL in text: refused with the box named, not a 500 on saving.
NOT_STORABLE = _N("text may not hold a NUL character")
# The first part (before a colon) of the domain's reasons, in the catalogue so that zh-CN reads them;
# what follows the colon (a masked number, a value) is kept as it is.
REASONS = (
    _N("not a phone number"),
    _N("not a valid number"),
    _N("empty phone number"),
    _N("the name is required"),
    _N("a name has at most 64 characters"),
    _N("an ID number is 17 digits and a final digit or X"),
    _N("an ID number has %s characters, this has %s"),
    _N("the birth date %s in the ID number is not a date"),
    _N("the birth date %s-%s-%s in the ID number is out of range"),
    _N("the check digit of the ID number does not match (a digit mistyped?)"),
    _N("the contact's name is required"),
    _N("give both latitude and longitude, or neither"),
    _N("refers to nothing that exists"),
    ALREADY_REGISTERED,
    _N("at most 5 phone numbers"),
)

COMMUNITIES = """
SELECT c.id, d.name || ' / ' || s.name || ' / ' || c.name AS path
FROM communities c JOIN streets s ON s.id = c.street_id JOIN districts d ON d.id = s.district_id
ORDER BY d.code, s.name, c.name, c.id
"""


def reason_text(gettext: Callable[[str], str], reason: str) -> str:
    """The domain's reason in the page's language where the catalogue has it: as it is, with its
    numbers as `%s`, or its part before a colon."""
    translated = gettext(reason)
    if translated != reason:
        return translated
    numbers = re.findall(r"\d+", reason)
    if numbers:
        pattern = re.sub(r"\d+", "%s", reason)
        if gettext(pattern) != pattern:
            return gettext(pattern) % tuple(numbers)
    head, colon, tail = reason.partition(":")
    if colon and gettext(head) != head:
        return gettext(head) + "：" + tail.strip()
    return reason


def _int_query(request: web.Request, name: str) -> int:
    raw = request.query.get(name, "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else 0


@routes.get("/console/residents")
@page()
async def residents_page(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    _ = gettext_for(request)
    query = {key: clean(request.query.get(key, ""))[:100] for key in ("q", "phone", "community")}
    offset = _int_query(request, "offset")
    errors: dict[str, str] = {}
    rows: list[Any] = []
    total = 0
    searched = any(query.values())
    async with runtime.pool.acquire() as conn:
        try:
            rows, total = await search_residents(
                conn,
                runtime.phones,
                name_fragment=query["q"] or None,
                phone=query["phone"] or None,
                community=query["community"] or None,
                limit=PAGE_SIZE,
                offset=offset,
            )
        except PhoneNumberError as exc:
            errors["phone"] = reason_text(_, str(exc))
        except PlaceError:
            errors["community"] = _("No community of that name.")
    today = runtime.clock().astimezone(runtime.tz).date()
    return render(
        request,
        "residents.html",
        {
            "query": query,
            "errors": errors,
            "rows": rows,
            "total": total,
            "searched": searched,
            "offset": offset,
            "page_size": PAGE_SIZE,
            "today": today,
            "age_on": age_on,
            "national": runtime.phones.national,
        },
    )


def _resident_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if len(raw) > 18:
        raise web.HTTPNotFound()
    return int(raw)


@routes.get(r"/console/residents/{id:\d+}")
@page()
async def resident_page(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    user: User = request[USER]
    resident_id = _resident_id(request)
    async with runtime.pool.acquire() as conn:
        card = await get_resident(conn, resident_id)
        if card is None:
            return _not_found(request)
        await log_resident_access(conn, request, user, resident_id, via="page")
        calls, _ = await list_calls(conn, resident_id=resident_id, limit=RECENT)
        alerts, _ = await list_alerts(conn, resident_id=resident_id, limit=RECENT)
        orders, _ = await list_orders(conn, resident_id=resident_id, limit=RECENT)
    today = runtime.clock().astimezone(runtime.tz).date()
    return render(
        request,
        "resident.html",
        {
            "card": card,
            "r": card.resident,
            "age": card.resident.age_on(today),
            "calls": calls,
            "alerts": alerts,
            "orders": orders,
            "national": runtime.phones.national,
            "saved": request.query.get("saved") == "1",
        },
    )


def _not_found(request: web.Request) -> web.Response:
    _ = gettext_for(request)
    return render(
        request,
        "error.html",
        {"title": _("Not found"), "message": _("There is no such resident.")},
        status=404,
    )


@dataclass(frozen=True)
class FormChoices:
    communities: list[tuple[int, str]]
    programmes: list[tuple[str, str]]


async def _choices(conn: Conn) -> FormChoices:
    communities = [(r["id"], r["path"]) for r in await conn.fetch(COMMUNITIES)]
    programmes = [(p.code, p.name) for p in await list_subsidy_programmes(conn)]
    return FormChoices(communities, programmes)


def _values_of(stored: ResidentInput, national: Callable[[str], str]) -> dict[str, str]:
    """The form's boxes filled from a stored record."""
    mobiles = [national(p.e164) for p in stored.phones if p.kind == PhoneKind.MOBILE]
    landlines = [national(p.e164) for p in stored.phones if p.kind == PhoneKind.LANDLINE]
    values = {
        "name": stored.name,
        "sex": stored.sex.value,
        "mobile": ", ".join(mobiles),
        "landline": ", ".join(landlines),
        "address": stored.address,
        "community_id": str(stored.community_id or ""),
        "lat": "" if stored.lat is None else str(stored.lat),
        "lon": "" if stored.lon is None else str(stored.lon),
        "living_situation": stored.living_situation.value,
        "language": stored.language.value,
        "chronic_conditions": stored.chronic_conditions,
        "medication": stored.medication,
        "allergies": stored.allergies,
        "mobility": stored.mobility,
        "cognition": stored.cognition,
        "notes": stored.notes,
        "subsidy_programme": stored.subsidy_programme or "",
        "monthly_allowance": ""
        if stored.monthly_allowance_fen is None
        else f"{stored.monthly_allowance_fen / 100:.2f}",
    }
    for contact in stored.contacts:
        n = contact.position
        values[f"contact{n}_name"] = contact.name
        values[f"contact{n}_relation"] = contact.relation
        values[f"contact{n}_phone"] = national(contact.phone_e164)
    return values


def _render_form(
    request: web.Request,
    choices: FormChoices,
    values: Mapping[str, str],
    errors: Mapping[str, str],
    *,
    resident_id: int | None,
    id_number_masked: str = "",
    status: int = 200,
) -> web.Response:
    return render(
        request,
        "resident_form.html",
        {
            "values": values,
            "errors": errors,
            "resident_id": resident_id,
            "id_number_masked": id_number_masked,
            "communities": choices.communities,
            "programmes": choices.programmes,
            "living_situations": list(LivingSituation),
            "languages": list(Language),
            "contacts": range(1, FORM_CONTACTS + 1),
        },
        status=status,
    )


FORM_FIELDS = (
    "id_number",
    "name",
    "sex",
    "mobile",
    "landline",
    "address",
    "community_id",
    "lat",
    "lon",
    "living_situation",
    "language",
    "chronic_conditions",
    "medication",
    "allergies",
    "mobility",
    "cognition",
    "notes",
    "subsidy_programme",
    "monthly_allowance",
    *(f"contact{n}_{part}" for n in range(1, FORM_CONTACTS + 1) for part in ("name", "relation", "phone")),
)
# Where the domain's field names are shown on the form.
FIELD_BOXES = {"phones": "mobile", "monthly_allowance_fen": "monthly_allowance", "contacts": "contact1_name"}


def _build(request: web.Request, form: Mapping[str, str], id_number: str) -> ResidentInput:
    """The form as a checked record, or InvalidInput naming each bad box."""
    runtime = request.app[RUNTIME]
    checker = Checker()
    for box, value in form.items():
        if not storable_text(value):
            checker.fail(box, NOT_STORABLE)
    # A community or programme that does not exist is refused by `upsert_resident` (its foreign keys).
    community_id: int | None = None
    raw_community = form.get("community_id", "")
    if raw_community:
        if raw_community.isascii() and raw_community.isdigit() and len(raw_community) < 10:
            community_id = int(raw_community)
        else:
            checker.fail("community_id", "refers to nothing that exists")
    programme = form.get("subsidy_programme", "")
    allowance = checker.check("monthly_allowance", lambda: parse_yuan(form.get("monthly_allowance", "")))
    # Each box checked on its own, so that a bad number is marked where it was typed.
    phones: list[str] = []
    for box in ("mobile", "landline"):
        numbers = list(split_list(form.get(box, "")))
        phones.extend(checker.check(box, partial(normalise_phones, runtime.phones, numbers)) or ())
    built = checker.check(
        "form",
        lambda: ResidentInput.build(
            runtime.phones,
            id_number=id_number,
            name=form.get("name", ""),
            sex=form.get("sex", ""),
            phones=phones,
            address=form.get("address", ""),
            community_id=community_id,
            lat=form.get("lat", ""),
            lon=form.get("lon", ""),
            living_situation=form.get("living_situation", ""),
            language=form.get("language", ""),
            chronic_conditions=form.get("chronic_conditions", ""),
            medication=form.get("medication", ""),
            allergies=form.get("allergies", ""),
            mobility=form.get("mobility", ""),
            cognition=form.get("cognition", ""),
            notes=form.get("notes", ""),
            subsidy_programme=programme,
            monthly_allowance_fen=allowance,
            contacts=[
                (
                    form.get(f"contact{n}_name", ""),
                    form.get(f"contact{n}_relation", ""),
                    form.get(f"contact{n}_phone", ""),
                )
                for n in range(1, FORM_CONTACTS + 1)
            ],
        ),
    )
    checker.done()
    assert built is not None
    return built


def _messages(request: web.Request, exc: InvalidInput) -> dict[str, str]:
    """One message per box: the first reason given for it."""
    _ = gettext_for(request)
    messages: dict[str, str] = {}
    for error in exc.errors:
        box = FIELD_BOXES.get(error.field, error.field)
        if box not in FORM_FIELDS:
            box = "form"
        messages.setdefault(box, reason_text(_, error.reason))
    return messages


async def _form_values(request: web.Request) -> dict[str, str]:
    posted = await request.post()
    return {key: str(posted.get(key, ""))[:2000] for key in FORM_FIELDS}


@routes.get("/console/residents/new")
@page(Role.ADMIN)
async def new_resident_form(request: web.Request) -> web.StreamResponse:
    async with request.app[RUNTIME].pool.acquire() as conn:
        choices = await _choices(conn)
    return _render_form(request, choices, {}, {}, resident_id=None)


@routes.post("/console/residents/new")
@page(Role.ADMIN)
async def create_resident(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    values = await _form_values(request)
    async with runtime.pool.acquire() as conn:
        choices = await _choices(conn)
        try:
            resident = _build(request, values, values["id_number"])
            async with conn.transaction():
                # The import's upsert would bring an existing record up to date: a form for a new
                # resident must not overwrite someone else's.
                exists = await conn.fetchval(
                    "SELECT id FROM residents WHERE id_number = $1 FOR UPDATE", resident.id_number
                )
                if exists is not None:
                    raise InvalidInput.one("id_number", ALREADY_REGISTERED)
                saved, changed = await upsert_resident(conn, resident, actor=f"user:{request[USER].username}")
                # Registered between the check and the insert: the upsert updated it; undone here.
                if not changed or saved.created_at != saved.updated_at:
                    raise InvalidInput.one("id_number", ALREADY_REGISTERED)
        except InvalidInput as exc:
            return _render_form(
                request, choices, values, _messages(request, exc), resident_id=None, status=400
            )
    raise web.HTTPSeeOther(f"/console/residents/{saved.id}?saved=1")


async def _stored(conn: Conn, resident_id: int) -> tuple[str, ResidentInput] | None:
    id_number: str | None = await conn.fetchval("SELECT id_number FROM residents WHERE id = $1", resident_id)
    if id_number is None:
        return None
    stored = await resident_input_of(conn, id_number)
    return (id_number, stored) if stored is not None else None


@routes.get(r"/console/residents/{id:\d+}/edit")
@page(Role.ADMIN)
async def edit_resident_form(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    resident_id = _resident_id(request)
    async with runtime.pool.acquire() as conn:
        found = await _stored(conn, resident_id)
        if found is None:
            return _not_found(request)
        await log_resident_access(conn, request, request[USER], resident_id, via="page")
        choices = await _choices(conn)
        card = await get_resident(conn, resident_id)
    assert card is not None
    return _render_form(
        request,
        choices,
        _values_of(found[1], runtime.phones.national),
        {},
        resident_id=resident_id,
        id_number_masked=card.resident.id_number_masked,
    )


@routes.post(r"/console/residents/{id:\d+}/edit")
@page(Role.ADMIN)
async def save_resident(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    resident_id = _resident_id(request)
    values = await _form_values(request)
    async with runtime.pool.acquire() as conn:
        found = await _stored(conn, resident_id)
        if found is None:
            return _not_found(request)
        choices = await _choices(conn)
        try:
            await upsert_resident(
                conn, _build(request, values, found[0]), actor=f"user:{request[USER].username}"
            )
        except InvalidInput as exc:
            card = await get_resident(conn, resident_id)
            assert card is not None
            return _render_form(
                request,
                choices,
                values,
                _messages(request, exc),
                resident_id=resident_id,
                id_number_masked=card.resident.id_number_masked,
                status=400,
            )
    raise web.HTTPSeeOther(f"/console/residents/{resident_id}?saved=1")
