"""What each service-order deadline does when it comes due (fired by the shared DeadlineRunner).

- `order.offer_expired`: a provider did not answer in `[orders] offer_seconds` → the offer is
  closed ('expired'), the provider told, the next candidate asked, or `unfilled` with a notice.
- `order.late_visit`: nobody checked in `late_visit_grace_seconds` after the window started →
  a notice and a timeline entry.
- `order.reminder`: before the window, the provider holding the order is reminded by SMS.

Each takes the order's row lock first and does nothing when the order (or the offer) has
already moved on: a move cancels the deadlines it makes pointless, and this guard covers a
move and a firing that raced.
"""

from __future__ import annotations

import datetime as dt

from dispatch.database import Conn
from dispatch.deadlines import Deadline, DeadlineHandlers
from dispatch.events import DomainEvent
from dispatch.offers import OFFER_EXPIRED, get_offer
from dispatch.order_desk import OrderDesk
from dispatch.orders import get_order
from dispatch.visit_desk import LATE_VISIT, REMINDER


def register_order_deadlines(handlers: DeadlineHandlers, desk: OrderDesk) -> None:
    """Hook every order deadline kind to its step."""

    async def offer_expired(conn: Conn, deadline: Deadline, now: dt.datetime) -> list[DomainEvent]:
        order = await get_order(conn, deadline.subject_id, for_update=True)
        offer = await get_offer(conn, int(deadline.payload["offer_id"]))
        if offer is None or not offer.pending:
            return []
        events: list[DomainEvent] = []
        await desk.expire_in(conn, events, order, offer)
        return events

    async def late_visit(conn: Conn, deadline: Deadline, now: dt.datetime) -> list[DomainEvent]:
        order = await get_order(conn, deadline.subject_id, for_update=True)
        events: list[DomainEvent] = []
        await desk.late_visit_in(conn, events, order, now)
        return events

    async def remind(conn: Conn, deadline: Deadline, now: dt.datetime) -> list[DomainEvent]:
        order = await get_order(conn, deadline.subject_id, for_update=True)
        await desk.remind_in(conn, order, int(deadline.payload["offer_id"]))
        return []

    handlers.register(OFFER_EXPIRED, offer_expired)
    handlers.register(LATE_VISIT, late_visit)
    handlers.register(REMINDER, remind)
