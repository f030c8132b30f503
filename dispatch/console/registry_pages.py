"""Providers and emergency teams on the console: lists with status, service items, districts, rating
and load, and a team's page with its members and weekly duty roster.

The lists run what `GET /api/v1/providers` and `GET /api/v1/teams` run
(`search_providers` with `provider_figures`, `search_teams`, `get_team`); the
load is the work in hand now: a provider's accepted and in-service orders
against its capacity, a team's alerts it has been sent to and not yet closed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from dispatch.api.keys import RUNTIME
from dispatch.console.i18n import _N
from dispatch.console.pages import gettext_for, page, render
from dispatch.database import Conn
from dispatch.geography import list_districts
from providers.catalogue import list_categories, list_items
from providers.provider_figures import NO_FIGURES, provider_figures
from providers.provider_input import ProviderStatus
from providers.registry import get_provider, search_providers
from providers.team_admin import search_teams
from providers.teams import TeamStatus, get_team, on_duty

routes = web.RouteTableDef()

PAGE_SIZE = 50
WEEKDAYS = (
    _N("Monday"),
    _N("Tuesday"),
    _N("Wednesday"),
    _N("Thursday"),
    _N("Friday"),
    _N("Saturday"),
    _N("Sunday"),
)
# Statuses and roles as the pages show them.
LABELS = (_N("suspended"), _N("inactive"), _N("leader"), _N("member"))

PROVIDER_LOAD = """
SELECT provider_id, count(*) AS n FROM service_orders
WHERE state IN ('accepted', 'in_service') AND provider_id = ANY($1::bigint[])
GROUP BY provider_id
"""

TEAM_LOAD = """
SELECT team_id, count(*) AS n FROM alerts
WHERE state IN ('team_dispatched', 'team_acknowledged', 'on_scene') AND team_id = ANY($1::bigint[])
GROUP BY team_id
"""


async def _loads(conn: Conn, query: str, ids: Sequence[int]) -> dict[int, int]:
    return {r[0]: r["n"] for r in await conn.fetch(query, list(ids))}


def _choice(request: web.Request, name: str, options: Sequence[str]) -> str | None:
    value = request.query.get(name, "")
    return value if value in options else None


def _offset(request: web.Request) -> int:
    raw = request.query.get("offset", "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else 0


@routes.get("/console/providers")
@page()
async def providers_page(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    offset = _offset(request)
    async with runtime.pool.acquire() as conn:
        items = await list_items(conn, active_only=False)
        categories = {c.code: c for c in await list_categories(conn)}
        districts = await list_districts(conn)
        status = _choice(request, "status", [s.value for s in ProviderStatus])
        item = _choice(request, "item", [i.code for i in items])
        district = _choice(request, "district", [str(d.id) for d in districts])
        name = request.query.get("q", "").strip()[:100]
        rows, total = await search_providers(
            conn,
            status=ProviderStatus(status) if status else None,
            item_code=item,
            district_id=int(district) if district else None,
            name_fragment=name or None,
            limit=PAGE_SIZE,
            offset=offset,
        )
        ids = [p.id for p in rows]
        figures = await provider_figures(conn, ids, runtime.clock())
        loads = await _loads(conn, PROVIDER_LOAD, ids)
        cards = [await get_provider(conn, p) for p in ids]
    providers: list[dict[str, Any]] = []
    for provider, card in zip(rows, cards, strict=True):
        assert card is not None
        providers.append(
            {
                "p": provider,
                "figures": figures.get(provider.id, NO_FIGURES),
                "load": loads.get(provider.id, 0),
                "categories": sorted({i.category_code for i in card.items}),
                "items": card.items,
                "areas": card.areas,
            }
        )
    return render(
        request,
        "providers.html",
        {
            "providers": providers,
            "total": total,
            "offset": offset,
            "page_size": PAGE_SIZE,
            "categories": categories,
            "items": items,
            "districts": districts,
            "statuses": list(ProviderStatus),
            "query": {"status": status or "", "item": item or "", "district": district or "", "q": name},
            "national": runtime.phones.national,
        },
    )


@routes.get("/console/teams")
@page()
async def teams_page(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    offset = _offset(request)
    local_now = runtime.clock().astimezone(runtime.tz)
    async with runtime.pool.acquire() as conn:
        districts = await list_districts(conn)
        status = _choice(request, "status", [s.value for s in TeamStatus])
        district = _choice(request, "district", [str(d.id) for d in districts])
        rows, total = await search_teams(
            conn,
            status=TeamStatus(status) if status else None,
            district_id=int(district) if district else None,
            limit=PAGE_SIZE,
            offset=offset,
        )
        ids = [s.team.id for s in rows]
        loads = await _loads(conn, TEAM_LOAD, ids)
        cards = [await get_team(conn, i) for i in ids]
    teams = [
        {
            "t": summary.team,
            "districts": summary.districts,
            "members": len(card.members) if card else 0,
            "on_duty": bool(card and on_duty(card.roster, local_now)),
            "load": loads.get(summary.team.id, 0),
        }
        for summary, card in zip(rows, cards, strict=True)
    ]
    return render(
        request,
        "teams.html",
        {
            "teams": teams,
            "total": total,
            "offset": offset,
            "page_size": PAGE_SIZE,
            "districts": districts,
            "statuses": list(TeamStatus),
            "query": {"status": status or "", "district": district or ""},
            "national": runtime.phones.national,
        },
    )


def _weekday_slots(
    roster: Sequence[Any], gettext: Any
) -> list[tuple[str, list[tuple[dt.time, dt.time, bool]]]]:
    """The roster by weekday, Monday first; each slot (starts, ends, runs past midnight): a slot that
    ends when it starts is the whole day from then."""
    days: list[tuple[str, list[tuple[dt.time, dt.time, bool]]]] = []
    for weekday, label in enumerate(WEEKDAYS, start=1):
        slots = [(s.starts, s.ends, s.ends <= s.starts) for s in roster if s.weekday == weekday]
        days.append((gettext(label), slots))
    return days


@routes.get(r"/console/teams/{id:\d{1,18}}")
@page()
async def team_page(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    team_id = int(request.match_info["id"])
    _ = gettext_for(request)
    async with runtime.pool.acquire() as conn:
        card = await get_team(conn, team_id)
        if card is None:
            return render(
                request,
                "error.html",
                {"title": _("Not found"), "message": _("There is no such team.")},
                status=404,
            )
        loads = await _loads(conn, TEAM_LOAD, [team_id])
        names = {d.id: d.name for d in await list_districts(conn)}
    local_now = runtime.clock().astimezone(runtime.tz)
    return render(
        request,
        "team.html",
        {
            "card": card,
            "t": card.team,
            "districts": [names.get(d, str(d)) for d in card.district_ids],
            "roster": _weekday_slots(card.roster, _),
            "on_duty": on_duty(card.roster, local_now),
            "load": loads.get(team_id, 0),
            "national": runtime.phones.national,
        },
    )
