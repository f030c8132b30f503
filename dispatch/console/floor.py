"""The floor: live calls, open notices, the alerts board, the orders board, and the resident card.

The page is rendered once; its script (`static/floor.js`) then reads
`GET /console/api/floor` (the snapshot: everything on the boards) and
`GET /console/api/residents/{id}/card` (a card, written to the access log),
and acts through the same `/api/v1/…` endpoints integrations use. Live
updates come over `/console/live`; after a reconnect, or when the server says
events were dropped, the script reads the snapshot again.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from dispatch.alerts import list_alerts
from dispatch.api.auth import current_user
from dispatch.api.errors import not_found, ok
from dispatch.api.keys import RUNTIME
from dispatch.api.residents import card_json
from dispatch.console.pages import page, render
from dispatch.database import Conn
from dispatch.orders import list_orders
from dispatch.resident_access import log_resident_access
from dispatch.residents import get_resident
from telephony.call_records import list_calls

routes = web.RouteTableDef()

# A call row without an end this old is a leftover of a lost AMI link, not a live call.
LIVE_CALL_HOURS = 4
RECENT_ON_CARD = 5
# What opened a card, as the access log names it: popped by a ringing call, or opened by hand.
CARD_VIA = frozenset({"call", "card"})

LIVE_CALLS = """
SELECT c.id, c.server, c.direction, c.caller_number, c.did, c.emergency, c.party, c.resident_id,
       c.queue, c.operator, c.arrived_at, c.answered_at, c.alert_id, r.name AS resident_name
FROM calls c LEFT JOIN residents r ON r.id = c.resident_id
WHERE c.ended_at IS NULL AND c.arrived_at > $1
ORDER BY c.arrived_at
LIMIT 200
"""

# Each open alert with its resident and its next escalation step (the earliest pending deadline).
OPEN_ALERTS = """
SELECT a.id, a.kind, a.state, a.source, a.raised_at, a.acknowledged_at, a.acknowledged_by,
       a.escalations, a.triggers, a.team_id, t.name AS team_name, a.handoff_120_at,
       a.resident_id, r.name AS resident_name, r.address, cm.name AS community,
       d.kind AS deadline_kind, d.due_at AS deadline_at
FROM alerts a
LEFT JOIN residents r ON r.id = a.resident_id
LEFT JOIN communities cm ON cm.id = r.community_id
LEFT JOIN emergency_teams t ON t.id = a.team_id
LEFT JOIN LATERAL (
    SELECT kind, due_at FROM deadlines
    WHERE subject_type = 'alert' AND subject_id = a.id AND fired_at IS NULL AND cancelled_at IS NULL
    ORDER BY due_at LIMIT 1
) d ON true
WHERE a.state NOT IN ('resolved', 'cancelled')
ORDER BY a.raised_at
LIMIT 300
"""

# Orders still in someone's hands. Overdue: nobody has checked in `orders.late_visit_grace_seconds`
# after the window began (whether or not a provider took it: the same grace as the late-visit
# notice), or still in service when the window ended.
OPEN_ORDERS = """
SELECT o.id, o.state, o.urgent, o.item_code, i.name_zh AS item_zh, i.name_en AS item_en,
       o.window_start, o.window_end, o.resident_id, r.name AS resident_name,
       o.provider_id, p.name AS provider_name, o.created_at, d.due_at AS deadline_at,
       (o.state IN ('new', 'offered', 'unfilled', 'accepted') AND o.window_start + $2 < $1)
       OR (o.state = 'in_service' AND o.window_end < $1) AS overdue
FROM service_orders o
JOIN residents r ON r.id = o.resident_id
JOIN service_items i ON i.code = o.item_code
LEFT JOIN providers p ON p.id = o.provider_id
LEFT JOIN LATERAL (
    SELECT due_at FROM deadlines
    WHERE subject_type = 'order' AND subject_id = o.id AND fired_at IS NULL AND cancelled_at IS NULL
    ORDER BY due_at LIMIT 1
) d ON true
WHERE o.state IN ('new', 'offered', 'unfilled', 'accepted', 'in_service', 'completed', 'complaint')
ORDER BY o.window_start
LIMIT 500
"""


# Open notices, critical first so a flood of warnings never pushes one out of the bounded list.
OPEN_NOTICES = """
SELECT id, kind, severity, text, subject_type, subject_id, created_at,
       coalesce(data->>'audience', 'all') AS audience
FROM notices
WHERE acknowledged_at IS NULL
ORDER BY severity = 'critical' DESC, created_at DESC, id DESC
LIMIT $1
"""
NOTICES_ON_FLOOR = 100


def _row_json(row: Any) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in dict(row.items()).items()}


async def floor_snapshot(conn: Conn, now: dt.datetime, late_grace_seconds: float) -> dict[str, Any]:
    calls = await conn.fetch(LIVE_CALLS, now - dt.timedelta(hours=LIVE_CALL_HOURS))
    alerts = await conn.fetch(OPEN_ALERTS)
    orders = await conn.fetch(OPEN_ORDERS, now, dt.timedelta(seconds=late_grace_seconds))
    notices = await conn.fetch(OPEN_NOTICES, NOTICES_ON_FLOOR)
    # The board shows at most NOTICES_ON_FLOOR; the count says how many are really open.
    open_notices = await conn.fetchval("SELECT count(*) FROM notices WHERE acknowledged_at IS NULL")
    return {
        "now": now.isoformat(),
        "calls": [_row_json(r) for r in calls],
        "alerts": [_row_json(r) for r in alerts],
        "orders": [_row_json(r) for r in orders],
        "notices": [_row_json(r) for r in notices],
        "notices_open": open_notices,
    }


@routes.get("/console/")
@page()
async def floor_page(request: web.Request) -> web.StreamResponse:
    async with request.app[RUNTIME].pool.acquire() as conn:
        items = await conn.fetch(
            """SELECT code, name_zh, name_en, urgent FROM service_items
               WHERE active ORDER BY category_code, code"""
        )
    return render(request, "floor.html", {"items": [dict(r.items()) for r in items]})


@routes.get("/console/api/floor")
async def floor_api(request: web.Request) -> web.Response:
    current_user(request)
    runtime = request.app[RUNTIME]
    async with runtime.pool.acquire() as conn:
        snapshot = await floor_snapshot(conn, runtime.clock(), runtime.config.orders.late_visit_grace_seconds)
    return ok(snapshot)


@routes.get(r"/console/api/residents/{id:\d{1,18}}/card")
async def resident_card(request: web.Request) -> web.Response:
    """The card a call pops (or a board opens): the record, and its last calls, alerts and orders."""
    user = current_user(request)
    runtime = request.app[RUNTIME]
    resident_id = int(request.match_info["id"])
    today = runtime.clock().astimezone(runtime.tz).date()
    async with runtime.pool.acquire() as conn:
        card = await get_resident(conn, resident_id)
        if card is None:
            raise not_found("resident")
        via = request.query.get("via", "card")
        await log_resident_access(conn, request, user, resident_id, via=via if via in CARD_VIA else "card")
        calls, _ = await list_calls(conn, resident_id=resident_id, limit=RECENT_ON_CARD)
        alerts, _ = await list_alerts(conn, resident_id=resident_id, limit=RECENT_ON_CARD)
        orders, _ = await list_orders(conn, resident_id=resident_id, limit=RECENT_ON_CARD)
    return ok(
        {
            "resident": card_json(card, runtime.phones, today),
            "calls": [c.as_json() for c in calls],
            "alerts": [a.as_json() for a in alerts],
            "orders": [o.as_json() for o in orders],
        }
    )
