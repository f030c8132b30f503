"""A call from a resident's own phone during an accepted order's visit is evidence of the visit.

Caller identification (telephony/call_store.py) publishes `call.from_resident` when an inbound
call comes from a phone registered as the resident's own (not a device's line). The carer
calls the hotline from the home at arrival and again when leaving:

- an accepted order of the resident whose window (opened an hour early: carers arrive
  early) holds the call → checked in, source 'call', at the call's time;
- an order in service for at least `MIN_VISIT` → checked out.

The call's id is kept with the evidence, so a call is used once however often its event is
seen. The event row is committed before it is published; a process that dies before acting on
it catches up at start (`catch_up`): calls of the last `CATCH_UP` not yet used as evidence are
looked at again with the same rules (a call outside any visit's window changes nothing).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from dispatch.components import Health
from dispatch.database import Conn
from dispatch.events import DomainEvent, Subscription
from dispatch.orders import EvidenceSource, IllegalTransition, InvalidOrder, Order, OrderState, get_order
from dispatch.visit_desk import VisitDesk, VisitStep

log = logging.getLogger(__name__)

ACTOR = "system:caller-id"
EARLY = dt.timedelta(hours=1)
MIN_VISIT = dt.timedelta(minutes=5)
CATCH_UP = dt.timedelta(hours=12)

FIND_VISIT = """
SELECT id FROM service_orders
WHERE resident_id = $1 AND (
    (state = 'accepted' AND $2 BETWEEN window_start - $3::interval AND window_end)
    OR (state = 'in_service' AND $2 >= checked_in_at + $4::interval))
ORDER BY state = 'in_service' DESC, window_start, id
LIMIT 1
FOR UPDATE
"""


async def use_call(
    conn: Conn, events: list[DomainEvent], desk: VisitDesk, resident_id: int, call_id: int, at: dt.datetime
) -> Order | None:
    """In the caller's transaction: the visit step this call reports, if any; None when none."""
    if await conn.fetchval("SELECT 1 FROM order_visit_evidence WHERE call_id = $1", call_id):
        return None
    order_id = await conn.fetchval(FIND_VISIT, resident_id, at, EARLY, MIN_VISIT)
    if order_id is None:
        return None
    order = await get_order(conn, order_id, for_update=True)
    step = VisitStep.CHECK_IN if order.state is OrderState.ACCEPTED else VisitStep.CHECK_OUT
    # a call reported a moment after the desk's clock (another host's) counts as now
    when = min(at, desk.runtime.clock())
    try:
        return await desk.record_visit_in(
            conn,
            events,
            order,
            step,
            ACTOR,
            source=EvidenceSource.CALL,
            at=when,
            note_text=f"来电 {call_id} / call {call_id}",
            call_id=call_id,
        )
    except (IllegalTransition, InvalidOrder) as exc:
        log.info("call %s not used as evidence for order %s: %s", call_id, order.id, exc)
        return None


@dataclass
class CallEvidence:
    """A component: listens for `call.from_resident`, and catches up at start."""

    desk: VisitDesk
    name: str = "call-evidence"
    _subscription: Subscription | None = field(default=None)

    async def on_event(self, event: DomainEvent) -> None:
        resident_id, call_id = event.data.get("resident_id"), event.data.get("call_id")
        if event.kind != "call.from_resident" or resident_id is None or call_id is None:
            return
        await self._use(int(resident_id), int(call_id), event.occurred_at)

    async def _use(self, resident_id: int, call_id: int, at: dt.datetime) -> None:
        runtime = self.desk.runtime
        events: list[DomainEvent] = []
        async with runtime.pool.acquire() as conn, conn.transaction():
            await use_call(conn, events, self.desk, resident_id, call_id, at)
        await runtime.bus.publish(*events)

    async def catch_up(self) -> int:
        """Calls from residents' own phones of the last CATCH_UP not yet used: looked at again."""
        runtime = self.desk.runtime
        rows = await runtime.pool.fetch(
            # through the calls of the window (indexed by arrival), then each call's own events
            """SELECT e.occurred_at, (e.data->>'resident_id')::bigint AS resident_id, c.id AS call_id
               FROM calls c
               JOIN events e ON e.subject_type = 'call' AND e.subject_id = c.id
                    AND e.kind = 'call.from_resident'
               WHERE c.arrived_at >= $1 AND c.direction = 'inbound'
                 AND NOT EXISTS (SELECT 1 FROM order_visit_evidence v WHERE v.call_id = c.id)
               ORDER BY c.arrived_at, e.id""",
            runtime.clock() - CATCH_UP,
        )
        for row in rows:
            await self._use(row["resident_id"], row["call_id"], row["occurred_at"])
        return len(rows)

    async def start(self) -> None:
        self._subscription = self.desk.runtime.bus.subscribe(
            "call-evidence", self.on_event, prefix="call.from_resident", lossless=True
        )
        await self.catch_up()

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None

    async def health(self) -> Health:
        running = self._subscription is not None and not self._subscription.task.done()
        return Health(running, {"status": "ok" if running else "stopped"})
