"""The service lane's actions: each one a transaction that moves the order and does everything that
goes with the move — offers made or taken back with their SMS jobs, deadlines armed or cancelled,
the provider and the family texted — and publishes the events after commit. Taking and offering
an order are here; the visit and the follow-up are in `VisitDesk` (dispatch/visit_desk.py), which
`OrderDesk` extends, so every caller holds one desk.

Operators (through the API), a provider's SMS replies and job page (dispatch/order_replies.py),
the offer and visit deadlines (dispatch/order_deadlines.py) and, later, telephony all call the
same actions with their own actor names. Every action takes the order's row lock first, so the
offer ladder, replies and operators see one another's decisions in order.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from dispatch.database import Conn
from dispatch.deadlines import cancel_deadlines, schedule_deadline
from dispatch.events import DomainEvent
from dispatch.matching import Candidate, ScoreWeights, rank_candidates
from dispatch.offers import (
    OFFER_EXPIRED,
    OfferChoice,
    OfferOutcome,
    OrderOffer,
    answer_offer,
    close_offer_jobs,
    offers_of,
    open_offer,
    withdraw_offer,
)
from dispatch.order_messages import StandDown, stand_down, unfilled_notice
from dispatch.orders import (
    InvalidOrder,
    NewOrder,
    Order,
    OrderError,
    OrderSource,
    OrderState,
    ensure_allowed,
    get_order,
    insert_order,
    note,
    transition,
)
from dispatch.subsidy_split import work_out_split
from dispatch.visit_desk import LATE_VISIT, REMINDER, SYSTEM, VisitDesk
from providers.catalogue import get_item
from providers.jobs import Job, close_job

# Orders are taken for the coming year, one visit of at most a week at a time.
MAX_AHEAD = dt.timedelta(days=366)
MAX_WINDOW = dt.timedelta(days=7)


class NoCandidate(OrderError):
    code = "no_candidate"


@dataclass(frozen=True)
class Offered:
    """An order after an action that offered it, with the ranking it was offered from."""

    order: Order
    candidates: list[Candidate]
    offers: list[OrderOffer]


class OrderDesk(VisitDesk):
    @property
    def weights(self) -> ScoreWeights:
        return ScoreWeights.from_config(self.settings)

    async def candidates(self, conn: Conn, order: Order) -> list[Candidate]:
        return await rank_candidates(conn, order, self.runtime.clock(), self.weights)

    # -- taking an order ----------------------------------------------------------------------

    async def create_order(
        self,
        *,
        resident_id: int | None,
        item_code: str | None,
        window_start: dt.datetime | None,
        window_end: dt.datetime | None,
        notes: str = "",
        source: OrderSource,
        actor: str,
        device_id: int | None = None,
    ) -> Offered:
        """Take an order and offer it at once; `unfilled` (with a notice) when nobody can take it.

        A service button's order names its device: the resident and item come from the device
        (its preset item) and the window from the press, unless given.
        """

        async def work(conn: Conn, events: list[DomainEvent]) -> Offered:
            return await self.create_order_in(
                conn,
                events,
                resident_id=resident_id,
                item_code=item_code,
                window_start=window_start,
                window_end=window_end,
                notes=notes,
                source=source,
                actor=actor,
                device_id=device_id,
            )

        return await self._run(work)

    async def create_order_in(
        self,
        conn: Conn,
        events: list[DomainEvent],
        *,
        resident_id: int | None,
        item_code: str | None,
        window_start: dt.datetime | None,
        window_end: dt.datetime | None,
        notes: str = "",
        source: OrderSource,
        actor: str,
        device_id: int | None = None,
        alert_id: int | None = None,
    ) -> Offered:
        """`create_order` in the caller's transaction (a device's repair, an alert's follow-up work)."""
        now = self.runtime.clock()
        resident, item = resident_id, item_code
        if device_id is not None:
            device = await conn.fetchrow(
                "SELECT resident_id, service_item_code FROM devices WHERE id = $1", device_id
            )
            if device is None:
                raise InvalidOrder("device_id", f"no device {device_id}")
            resident = resident or device["resident_id"]
            item = item or device["service_item_code"]
        start = window_start or now
        end = window_end or start + dt.timedelta(seconds=self.settings.button_window_seconds)
        new = await self._new_order(conn, resident, item, start, end, notes, source, device_id)
        order, created = await insert_order(
            conn, dataclasses.replace(new, alert_id=alert_id), actor=actor, at=now
        )
        events.append(created)
        await schedule_deadline(
            conn,
            kind=LATE_VISIT,
            subject_type="order",
            subject_id=order.id,
            due_at=order.window_start + dt.timedelta(seconds=self.settings.late_visit_grace_seconds),
        )
        try:
            return await self._offer_in(conn, events, order, "offer", actor=actor, provider_id=None)
        except NoCandidate:
            order = await self._unfill(conn, events, order, "no provider can take it", now)
            return Offered(order, [], [])

    async def _new_order(
        self,
        conn: Conn,
        resident_id: int | None,
        item_code: str | None,
        start: dt.datetime,
        end: dt.datetime,
        notes: str,
        source: OrderSource,
        device_id: int | None,
    ) -> NewOrder:
        now = self.runtime.clock()
        if resident_id is None:
            raise InvalidOrder("resident_id", "is required")
        if not await conn.fetchval("SELECT active FROM residents WHERE id = $1", resident_id):
            raise InvalidOrder("resident_id", f"no active resident {resident_id}")
        if item_code is None:
            raise InvalidOrder("item_code", "is required")
        item = await get_item(conn, item_code)
        if item is None or not item.active:
            raise InvalidOrder("item_code", f"no active service item {item_code!r}")
        if start.tzinfo is None or end.tzinfo is None:
            raise InvalidOrder("window_start", "give the time zone, e.g. +08:00")
        if end <= start:
            raise InvalidOrder("window_end", "must be after window_start")
        if end <= now:
            raise InvalidOrder("window_end", "the window is already over")
        if start > now + MAX_AHEAD:
            raise InvalidOrder("window_start", f"at most {MAX_AHEAD.days} days ahead")
        if end - start > MAX_WINDOW:
            raise InvalidOrder("window_end", f"a window is at most {MAX_WINDOW.days} days long")
        split = await work_out_split(
            conn,
            resident_id=resident_id,
            price_fen=item.unit_price_fen,
            item_eligible=item.subsidy_eligible,
            window_start=start,
            tz=self.runtime.tz,
        )
        return NewOrder(
            resident_id=resident_id,
            item_code=item.code,
            source=source,
            urgent=item.urgent,
            window_start=start,
            window_end=end,
            notes=notes,
            split=split,
            device_id=device_id,
        )

    # -- offering -----------------------------------------------------------------------------

    async def offer(
        self, order_id: int, actor: str, *, provider_id: int | None = None, reason: str = ""
    ) -> Offered:
        """Offer an order that is new or unfilled: to the best candidates, or to `provider_id`."""

        async def work(conn: Conn, events: list[DomainEvent]) -> Offered:
            order = await get_order(conn, order_id, for_update=True)
            return await self._offer_in(
                conn, events, order, "offer", actor=actor, provider_id=provider_id, reason=reason
            )

        return await self._run(work)

    async def re_offer(
        self, order_id: int, actor: str, *, provider_id: int | None = None, reason: str = ""
    ) -> Offered:
        """Take the order back from the provider(s) it is with and offer it to others."""

        async def work(conn: Conn, events: list[DomainEvent]) -> Offered:
            now = self.runtime.clock()
            order = await get_order(conn, order_id, for_update=True)
            if order.state not in (OrderState.OFFERED, OrderState.ACCEPTED):
                return await self._offer_in(
                    conn, events, order, "re_offer", actor=actor, provider_id=provider_id
                )
            await self._take_back(conn, order, actor, now, StandDown.WITHDRAWN)
            return await self._offer_in(
                conn, events, order, "re_offer", actor=actor, provider_id=provider_id, reason=reason
            )

        return await self._run(work)

    async def _offer_in(
        self,
        conn: Conn,
        events: list[DomainEvent],
        order: Order,
        action: str,
        *,
        actor: str,
        provider_id: int | None,
        reason: str = "",
    ) -> Offered:
        """Move the order (locked by the caller) by `action` and send its offers; NoCandidate when
        nobody can be asked, before anything is written."""
        now = self.runtime.clock()
        ensure_allowed(order, action)
        candidates = await self.candidates(conn, order)
        if provider_id is not None:
            await self._check_chosen(conn, order, provider_id)
            chosen = next((c for c in candidates if c.provider_id == provider_id), None)
            targets = [(provider_id, chosen, OfferChoice.OPERATOR)]
        else:
            fanout = self.settings.urgent_fanout if order.urgent else 1
            choice = OfferChoice.FANOUT if fanout > 1 else OfferChoice.RANKED
            targets = [(c.provider_id, c, choice) for c in candidates[:fanout]]
            if not targets:
                raise NoCandidate(f"order {order.id}: no provider can take it now; choose one (provider_id)")
        moved = await transition(
            conn,
            order.id,
            action,
            actor=actor,
            at=now,
            reason=reason,
            data={
                "providers": [t[0] for t in targets],
                "chosen": targets[0][2].value,
                "scores": [round(t[1].score, 4) if t[1] else None for t in targets],
            },
        )
        events.append(moved.event)
        ranks = {c.provider_id: i for i, c in enumerate(candidates, start=1)}
        offers = [
            await open_offer(
                conn,
                self.runtime,
                moved.order,
                target,
                chosen=choice,
                candidate=candidate,
                rank=ranks.get(target),
                actor=actor,
                now=now,
            )
            for target, candidate, choice in targets
        ]
        return Offered(moved.order, candidates, offers)

    async def _check_chosen(self, conn: Conn, order: Order, provider_id: int) -> None:
        status = await conn.fetchval("SELECT status FROM providers WHERE id = $1", provider_id)
        if status != "active":
            raise InvalidOrder("provider_id", f"no active provider {provider_id}")
        if any(o.provider_id == provider_id and o.pending for o in await offers_of(conn, order.id)):
            raise InvalidOrder("provider_id", f"provider {provider_id} already has this order's offer")

    async def _take_back(
        self, conn: Conn, order: Order, actor: str, now: dt.datetime, why: StandDown
    ) -> None:
        """Close every offer of the order still out (pending: cancelled; accepted: taken back)."""
        closing: dict[int, OfferOutcome] = {}
        for offer in await offers_of(conn, order.id):
            if offer.pending:
                await answer_offer(conn, offer.id, OfferOutcome.CANCELLED, actor=actor, at=now)
                closing[offer.job_id] = OfferOutcome.CANCELLED
            elif offer.holds_order:
                await withdraw_offer(conn, offer.id, at=now)
                closing[offer.job_id] = OfferOutcome.ACCEPTED
        closed = await close_offer_jobs(conn, closing, at=now)
        await stand_down(conn, self.runtime, order, closed, why)
        await cancel_deadlines(
            conn, subject_type="order", subject_id=order.id, kinds=(OFFER_EXPIRED, REMINDER), at=now
        )

    async def _unfill(
        self, conn: Conn, events: list[DomainEvent], order: Order, why: str, now: dt.datetime
    ) -> Order:
        moved = await transition(conn, order.id, "unfill", actor=SYSTEM, at=now, reason=why)
        events.append(moved.event)
        asked = len(await offers_of(conn, order.id))
        events.append(await unfilled_notice(conn, order, asked, now))
        return moved.order

    async def next_offer_in(self, conn: Conn, events: list[DomainEvent], order: Order, why: str) -> Order:
        """After an offer closed unanswered or declined: when none is still out, the next candidate(s),
        or `unfilled` and a notice when nobody is left."""
        offers = await offers_of(conn, order.id)
        if order.state is not OrderState.OFFERED or any(o.pending for o in offers):
            return order
        now = self.runtime.clock()
        await cancel_deadlines(
            conn, subject_type="order", subject_id=order.id, kinds=(OFFER_EXPIRED,), at=now
        )
        try:
            offered = await self._offer_in(
                conn, events, order, "offer_next", actor=SYSTEM, provider_id=None, reason=why
            )
        except NoCandidate:
            return await self._unfill(conn, events, order, f"{why}; no candidate left", now)
        return offered.order

    # -- a provider's answers (SMS reply or job page) -----------------------------------------

    async def accept_in(
        self, conn: Conn, events: list[DomainEvent], order: Order, offer: OrderOffer, actor: str
    ) -> Order:
        """The first provider to accept gets the order; the others' offers are taken back."""
        now = self.runtime.clock()
        moved = await transition(
            conn,
            order.id,
            "accept",
            actor=actor,
            at=now,
            value=offer.provider_id,
            data={"provider_id": offer.provider_id, "offer_id": offer.id},
        )
        events.append(moved.event)
        await answer_offer(conn, offer.id, OfferOutcome.ACCEPTED, actor=actor, at=now)
        closing: dict[int, OfferOutcome] = {}
        for other in await offers_of(conn, order.id):
            if other.pending:
                await answer_offer(conn, other.id, OfferOutcome.TAKEN_BY_OTHER, actor=actor, at=now)
                closing[other.job_id] = OfferOutcome.TAKEN_BY_OTHER
        closed = await close_offer_jobs(conn, closing, at=now)
        await stand_down(conn, self.runtime, moved.order, closed, StandDown.TAKEN_BY_OTHER)
        await cancel_deadlines(
            conn, subject_type="order", subject_id=order.id, kinds=(OFFER_EXPIRED,), at=now
        )
        remind_at = order.window_start - dt.timedelta(seconds=self.settings.reminder_seconds_before)
        if self.settings.reminder_seconds_before > 0 and remind_at > now:
            await schedule_deadline(
                conn,
                kind=REMINDER,
                subject_type="order",
                subject_id=order.id,
                due_at=remind_at,
                payload={"offer_id": offer.id},
            )
        return moved.order

    async def decline_in(
        self, conn: Conn, events: list[DomainEvent], order: Order, offer: OrderOffer, job: Job, actor: str
    ) -> Order:
        now = self.runtime.clock()
        await answer_offer(conn, offer.id, OfferOutcome.DECLINED, actor=actor, at=now)
        await close_job(conn, job.id, reason=OfferOutcome.DECLINED.value, at=now)
        events.append(
            await note(
                conn,
                order,
                kind="order.offer_declined",
                actor=actor,
                at=now,
                data={"offer_id": offer.id, "provider_id": offer.provider_id},
            )
        )
        return await self.next_offer_in(conn, events, order, f"provider {offer.provider_id} declined")

    async def expire_in(
        self, conn: Conn, events: list[DomainEvent], order: Order, offer: OrderOffer
    ) -> Order:
        """An offer not answered by its deadline: closed, the provider told, the next one asked."""
        now = self.runtime.clock()
        if await answer_offer(conn, offer.id, OfferOutcome.EXPIRED, actor=SYSTEM, at=now) is None:
            return order
        closed = await close_offer_jobs(conn, {offer.job_id: OfferOutcome.EXPIRED}, at=now)
        await stand_down(conn, self.runtime, order, closed, StandDown.EXPIRED)
        events.append(
            await note(
                conn,
                order,
                kind="order.offer_expired",
                actor=SYSTEM,
                at=now,
                data={
                    "offer_id": offer.id,
                    "provider_id": offer.provider_id,
                    "due_at": offer.due_at.isoformat(),
                },
            )
        )
        return await self.next_offer_in(conn, events, order, f"provider {offer.provider_id} did not answer")

    # -- cancelling ---------------------------------------------------------------------------

    async def cancel(self, order_id: int, actor: str, *, reason: str) -> Order:
        if not reason.strip():
            raise InvalidOrder("reason", "is required")

        async def work(conn: Conn, events: list[DomainEvent]) -> Order:
            now = self.runtime.clock()
            order = await get_order(conn, order_id, for_update=True)
            moved = await transition(conn, order_id, "cancel", actor=actor, at=now, reason=reason)
            events.append(moved.event)
            await self._take_back(conn, order, actor, now, StandDown.CANCELLED)
            await cancel_deadlines(conn, subject_type="order", subject_id=order_id, at=now)
            return moved.order

        return await self._run(work)
