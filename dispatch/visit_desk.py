"""The service lane's visit and follow-up actions: check-in and check-out (from the provider's SMS
or job page, an operator, or later a call from the resident's own phone), the follow-up call's
confirmation and rating, and the deadlines around the visit (the reminder, the late-visit check).

Each public action is one transaction that takes the order's row lock first and publishes its
events after commit; the `…_in` variants run inside a caller's transaction (a provider's reply).
`OrderDesk` (dispatch/order_desk.py) builds the offering actions on top of these.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TypeVar

from dispatch.config import OrdersConfig
from dispatch.database import Conn
from dispatch.deadlines import cancel_deadlines
from dispatch.events import DomainEvent
from dispatch.follow_up import drop_follow_up, schedule_follow_up
from dispatch.offers import OfferOutcome, close_offer_jobs, offers_of
from dispatch.order_messages import complaint_notice, late_visit_notice, remind, tell_family
from dispatch.orders import (
    EvidenceSource,
    InvalidOrder,
    Order,
    OrderState,
    ensure_allowed,
    get_order,
    note,
    record_evidence,
    transition,
)
from dispatch.runtime import Runtime
from providers.jobs import get_job

T = TypeVar("T")

LATE_VISIT = "order.late_visit"
REMINDER = "order.reminder"
SYSTEM = "system:orders"
# States in which nobody has started the visit yet.
NOT_STARTED = (OrderState.NEW, OrderState.OFFERED, OrderState.ACCEPTED, OrderState.UNFILLED)


class VisitStep(StrEnum):
    """A step of the visit, named as the order's transition it makes."""

    CHECK_IN = "check_in"
    CHECK_OUT = "check_out"


def _check_rating(rating: int) -> None:
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise InvalidOrder("rating", "expected a whole number from 1 to 5")


class VisitDesk:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def settings(self) -> OrdersConfig:
        return self.runtime.config.orders

    async def _run(self, work: Callable[[Conn, list[DomainEvent]], Awaitable[T]]) -> T:
        """One transaction; its events are published only after it committed."""
        events: list[DomainEvent] = []
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            result = await work(conn, events)
        await self.runtime.bus.publish(*events)
        return result

    # -- the visit ----------------------------------------------------------------------------

    async def record_visit(
        self,
        order_id: int,
        step: VisitStep,
        actor: str,
        *,
        source: EvidenceSource,
        at: dt.datetime | None = None,
        note_text: str = "",
    ) -> Order:
        async def work(conn: Conn, events: list[DomainEvent]) -> Order:
            order = await get_order(conn, order_id, for_update=True)
            return await self.record_visit_in(
                conn, events, order, step, actor, source=source, at=at, note_text=note_text
            )

        return await self._run(work)

    async def record_visit_in(
        self,
        conn: Conn,
        events: list[DomainEvent],
        order: Order,
        step: VisitStep,
        actor: str,
        *,
        source: EvidenceSource,
        at: dt.datetime | None = None,
        note_text: str = "",
        call_id: int | None = None,
    ) -> Order:
        """Check-in (accepted → in_service) or check-out (in_service → completed), with its evidence
        (`call_id`: the call from the resident's own phone that reported it)."""
        now = self.runtime.clock()
        follows = order.accepted_at if step is VisitStep.CHECK_IN else order.checked_in_at
        when = self._visit_time(at, follows or order.created_at, now, "at")
        moved = await transition(
            conn,
            order.id,
            step.value,
            actor=actor,
            at=now,
            value=when,
            source=source,
            reason=note_text,
            data={"source": source.value, "at": when.isoformat()},
        )
        events.append(moved.event)
        await record_evidence(
            conn,
            order.id,
            kind=step.value,
            source=source,
            at=when,
            recorded_at=now,
            actor=actor,
            note=note_text,
            call_id=call_id,
        )
        if step is VisitStep.CHECK_IN:
            # nobody is late any more, and nobody needs reminding
            await cancel_deadlines(
                conn, subject_type="order", subject_id=order.id, kinds=(LATE_VISIT, REMINDER), at=now
            )
        else:
            holder = next((o for o in await offers_of(conn, order.id) if o.holds_order), None)
            if holder is not None:
                await close_offer_jobs(conn, {holder.job_id: OfferOutcome.ACCEPTED}, at=now)
            events.append(await schedule_follow_up(conn, self.settings, self.runtime.tz, moved.order, now))
        return moved.order

    @staticmethod
    def _visit_time(at: dt.datetime | None, after: dt.datetime, now: dt.datetime, field: str) -> dt.datetime:
        """A visit time reported later (an operator typing in a phoned check-in) or now; never
        before the step it follows, nor in the future."""
        if at is None:
            return now
        if at.tzinfo is None:
            raise InvalidOrder(field, "give the time zone, e.g. +08:00")
        if at > now:
            raise InvalidOrder(field, "is in the future")
        if at < after:
            raise InvalidOrder(field, f"is before the previous step ({after.isoformat()})")
        return at

    # -- follow-up ----------------------------------------------------------------------------

    async def confirm(self, order_id: int, actor: str, *, rating: int, note_text: str = "") -> Order:
        """The follow-up call (回访): confirmed with the resident's rating; 1 or 2 opens a complaint."""
        _check_rating(rating)

        async def work(conn: Conn, events: list[DomainEvent]) -> Order:
            order = await get_order(conn, order_id, for_update=True)
            return await self.confirm_in(conn, events, order, actor, rating=rating, note_text=note_text)

        return await self._run(work)

    async def confirm_in(
        self,
        conn: Conn,
        events: list[DomainEvent],
        order: Order,
        actor: str,
        *,
        rating: int,
        note_text: str = "",
    ) -> Order:
        """`confirm` in the caller's transaction, on an order it locked (the IVR's rating call)."""
        _check_rating(rating)
        now = self.runtime.clock()
        # only a completed order is confirmed, whatever the rating
        ensure_allowed(order, "confirm")
        action = "complain" if rating <= 2 else "confirm"
        moved = await transition(
            conn,
            order.id,
            action,
            actor=actor,
            at=now,
            value=rating,
            reason=note_text,
            data={"rating": rating},
        )
        events.append(moved.event)
        if moved.order.state is OrderState.COMPLAINT:
            events.append(await complaint_notice(conn, moved.order, rating, now))
        await self._rate_provider(conn, moved.order)
        await tell_family(conn, self.runtime, moved.order)
        await drop_follow_up(conn, moved.order, now)
        return moved.order

    async def rate(self, order_id: int, actor: str, *, rating: int, note_text: str = "") -> Order:
        """A rating given or changed after the visit; 1 or 2 on a completed or confirmed order is a
        complaint."""
        _check_rating(rating)

        async def work(conn: Conn, events: list[DomainEvent]) -> Order:
            now = self.runtime.clock()
            order = await get_order(conn, order_id, for_update=True)
            complains = rating <= 2 and order.state in (OrderState.COMPLETED, OrderState.CONFIRMED)
            moved = await transition(
                conn,
                order_id,
                "complain" if complains else "rate",
                actor=actor,
                at=now,
                value=rating,
                reason=note_text,
                data={"rating": rating, "previous": order.rating},
            )
            events.append(moved.event)
            if complains:
                events.append(await complaint_notice(conn, moved.order, rating, now))
            await self._rate_provider(conn, moved.order)
            return moved.order

        return await self._run(work)

    async def _rate_provider(self, conn: Conn, order: Order) -> None:
        """A provider's rating is the mean of its residents' follow-up ratings, once it has any."""
        await conn.execute(
            """UPDATE providers SET rating = rated.mean
               FROM (SELECT round(avg(rating), 2) AS mean FROM service_orders
                     WHERE provider_id = $1 AND rating IS NOT NULL) rated
               WHERE id = $1 AND rated.mean IS NOT NULL""",
            order.provider_id,
        )

    # -- around the visit ----------------------------------------------------------------------------

    async def late_visit_in(
        self, conn: Conn, events: list[DomainEvent], order: Order, now: dt.datetime
    ) -> None:
        """Nobody checked in by window start + grace: the operators must find out why."""
        if order.state not in NOT_STARTED:
            return
        late = round((now - order.window_start).total_seconds() / 60)
        events.append(
            await note(
                conn,
                order,
                kind="order.late_visit",
                actor=SYSTEM,
                at=now,
                data={"state": order.state.value, "minutes_after_start": late},
            )
        )
        events.append(await late_visit_notice(conn, order, late, now))

    async def remind_in(self, conn: Conn, order: Order, offer_id: int) -> None:
        """Before the window: remind the provider holding the order how to check in."""
        holder = next((o for o in await offers_of(conn, order.id) if o.holds_order), None)
        if order.state is not OrderState.ACCEPTED or holder is None or holder.id != offer_id:
            return
        job = await get_job(conn, holder.job_id)
        if job is None or not job.open:
            return
        await remind(conn, self.runtime, order, holder, job)
