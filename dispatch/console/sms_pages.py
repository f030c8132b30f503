"""The SMS outbox and inbox on the console, and (in outbox mode) a reply typed as if from a phone.

The lists read what `GET /api/v1/sms` reads (its query), with the present state
of the order or alert each message is about, so that what a reply did shows
beside it. A typed reply goes to `POST /api/v1/sms/outbox/reply` from the
page's script (`static/sms.js`): the same path as a reply through Twilio.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from dispatch.api.keys import RUNTIME
from dispatch.console.i18n import _N
from dispatch.console.pages import page, render
from dispatch.database import Conn
from providers.sms_api import LIST_SMS

routes = web.RouteTableDef()

PAGE_SIZE = 100
BOXES = {"out": "outbox", "in": "inbox"}
# What routing did with a reply (`sms_messages.outcome`), and message statuses, as the page shows them.
LABELS = (
    _N("acted"),
    _N("duplicate"),
    _N("unknown_sender"),
    _N("unparsed"),
    _N("ambiguous"),
    _N("no_job"),
    _N("handler_failed"),
    _N("queued"),
    _N("sending"),
    _N("sent"),
    _N("delivered"),
    _N("undelivered"),
    _N("received"),
)
# Why a message was sent (`SmsPurpose`), shown as `sms.<purpose>`; an unknown one as its code.
PURPOSES = (
    _N("sms.offer"),
    _N("sms.dispatch"),
    _N("sms.family"),
    _N("sms.reminder"),
    _N("sms.cancellation"),
    _N("sms.proof_of_service"),
    _N("sms.help"),
    _N("sms.reply_ack"),
    _N("sms.notice"),
    _N("sms.reply"),
)

SUBJECT_STATES = """
SELECT 'order' AS subject_type, id, state FROM service_orders WHERE id = ANY($1::bigint[])
UNION ALL
SELECT 'alert', id, state FROM alerts WHERE id = ANY($2::bigint[])
"""


async def _subject_states(conn: Conn, rows: Sequence[Any]) -> dict[tuple[str, int], str]:
    orders = [r["subject_id"] for r in rows if r["subject_type"] == "order" and r["subject_id"]]
    alerts = [r["subject_id"] for r in rows if r["subject_type"] == "alert" and r["subject_id"]]
    if not orders and not alerts:
        return {}
    found = await conn.fetch(SUBJECT_STATES, orders, alerts)
    return {(r["subject_type"], r["id"]): r["state"] for r in found}


def _id_query(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name, "")
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < len(raw) < 19 else None


@routes.get("/console/sms")
@page()
async def sms_page(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    direction = request.query.get("direction", "out")
    if direction not in BOXES:
        direction = "out"
    before = _id_query(request, "before")
    since: dt.datetime | None = None
    async with runtime.pool.acquire() as conn:
        rows = await conn.fetch(LIST_SMS, direction, None, since, None, before, PAGE_SIZE)
        states = await _subject_states(conn, rows)
    messages = [
        {
            **dict(r.items()),
            "subject_state": states.get((r["subject_type"], r["subject_id"])),
        }
        for r in rows
    ]
    return render(
        request,
        "sms.html",
        {
            "direction": direction,
            "messages": messages,
            "next_before": messages[-1]["id"] if len(messages) == PAGE_SIZE else None,
            "outbox_mode": not runtime.config.sms.twilio_enabled,
            "national": runtime.phones.national,
            # the reply just typed, marked in the inbox
            "replied": _id_query(request, "reply"),
        },
    )
