"""Service orders (工单): the record, the state machine, and the one way to store a new one.

new → offered → accepted → in_service → completed → confirmed → settled, with the
side exits cancelled, unfilled (no provider accepted: back to an operator) and
complaint. Each transition is one `UPDATE … WHERE state = ANY(allowed) RETURNING`
under the order's row lock, so when a provider's SMS and an operator (or two
providers of an urgent fan-out) race, exactly one wins and the other gets
`IllegalTransition` naming the state it found. Every transition appends an event
row in the same transaction.

Functions here take a connection and run in the caller's transaction; they
return the events to publish once the caller has committed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import asyncpg

from dispatch.database import Conn
from dispatch.events import DomainEvent, append_event
from dispatch.subsidy_split import SubsidySplit


class OrderState(StrEnum):
    NEW = "new"
    OFFERED = "offered"
    ACCEPTED = "accepted"
    IN_SERVICE = "in_service"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    SETTLED = "settled"
    CANCELLED = "cancelled"
    UNFILLED = "unfilled"
    COMPLAINT = "complaint"


class OrderSource(StrEnum):
    OPERATOR = "operator"
    BUTTON = "button"
    CALL = "call"
    API = "api"
    # opened by a device's fault (a repair order), or as follow-up work of an alert
    DEVICE = "device"
    ALERT = "alert"


class EvidenceSource(StrEnum):
    """How a check-in or check-out reached us."""

    SMS = "sms"
    PAGE = "page"
    CALL = "call"
    API = "api"


class OrderError(Exception):
    """An order action that cannot be done; `code` is stable for API clients."""

    code = "order_error"


class OrderNotFound(OrderError):
    code = "not_found"


class IllegalTransition(OrderError):
    code = "illegal_transition"

    def __init__(self, order_id: int, action: str, current: OrderState) -> None:
        super().__init__(f"order {order_id} is {current.value}: cannot {action.replace('_', ' ')}")
        self.order_id, self.action, self.current = order_id, action, current


class InvalidOrder(OrderError):
    """A field of an order or action that cannot be used; `field` names it."""

    code = "invalid"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Order:
    id: int
    resident_id: int
    item_code: str
    source: OrderSource
    device_id: int | None
    state: OrderState
    urgent: bool
    window_start: dt.datetime
    window_end: dt.datetime
    notes: str
    context_id: uuid.UUID
    created_at: dt.datetime
    created_by: str
    price_fen: int
    covered_fen: int
    copay_fen: int
    not_eligible_fen: int
    subsidy_programme: str | None
    subsidy_month: dt.date
    allowance_fen: int
    allowance_left_fen: int
    subsidy_reasons: list[dict[str, str]]
    provider_id: int | None
    accepted_at: dt.datetime | None
    checked_in_at: dt.datetime | None
    checked_in_source: EvidenceSource | None
    checked_out_at: dt.datetime | None
    checked_out_source: EvidenceSource | None
    service_seconds: int | None
    rating: int | None
    follow_up_note: str
    confirmed_at: dt.datetime | None
    settled_at: dt.datetime | None
    settlement_ref: str | None
    closed_at: dt.datetime | None
    close_reason: str
    # the alert this order is follow-up work of (one case file)
    alert_id: int | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Order:
        values = {name: row[name] for name in cls.__dataclass_fields__}
        values["source"] = OrderSource(values["source"])
        values["state"] = OrderState(values["state"])
        for name in ("checked_in_source", "checked_out_source"):
            values[name] = EvidenceSource(values[name]) if values[name] else None
        return cls(**values)

    @property
    def split(self) -> SubsidySplit:
        return SubsidySplit(
            price_fen=self.price_fen,
            covered_fen=self.covered_fen,
            copay_fen=self.copay_fen,
            not_eligible_fen=self.not_eligible_fen,
            programme=self.subsidy_programme,
            month=self.subsidy_month,
            allowance_fen=self.allowance_fen,
            allowance_left_fen=self.allowance_left_fen,
            reasons=tuple((r["zh"], r["en"]) for r in self.subsidy_reasons),
        )

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            data[name] = value.isoformat() if isinstance(value, dt.datetime | dt.date) else value
        data["context_id"] = str(self.context_id)
        return data


COLUMNS = """id, resident_id, item_code, source, device_id, state, urgent, window_start, window_end, notes,
    context_id, created_at, created_by, price_fen, covered_fen, copay_fen, not_eligible_fen,
    subsidy_programme, subsidy_month, allowance_fen, allowance_left_fen, subsidy_reasons, provider_id,
    accepted_at,
    checked_in_at, checked_in_source, checked_out_at, checked_out_source, service_seconds, rating,
    follow_up_note, confirmed_at, settled_at, settlement_ref, closed_at, close_reason, alert_id"""


async def get_order(conn: Conn, order_id: int, *, for_update: bool = False) -> Order:
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM service_orders WHERE id = $1" + (" FOR UPDATE" if for_update else ""),
        order_id,
    )
    if row is None:
        raise OrderNotFound(f"order {order_id} not found")
    return Order.from_row(row)


@dataclass(frozen=True)
class NewOrder:
    """What an order is when it is taken: who, what, when, and who pays for it."""

    resident_id: int
    item_code: str
    source: OrderSource
    urgent: bool
    window_start: dt.datetime
    window_end: dt.datetime
    notes: str
    split: SubsidySplit
    device_id: int | None = None
    alert_id: int | None = None


INSERT_ORDER = f"""
INSERT INTO service_orders (resident_id, item_code, source, device_id, urgent, window_start, window_end,
    notes, context_id, created_at, created_by, price_fen, covered_fen, copay_fen, not_eligible_fen,
    subsidy_programme, subsidy_month, allowance_fen, allowance_left_fen, subsidy_reasons, alert_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
RETURNING {COLUMNS}
"""


async def insert_order(
    conn: Conn, new: NewOrder, *, actor: str, at: dt.datetime, context_id: uuid.UUID | None = None
) -> tuple[Order, DomainEvent]:
    """Store an order in state `new` with its `order.created` event."""
    split = new.split
    row = await conn.fetchrow(
        INSERT_ORDER,
        new.resident_id,
        new.item_code,
        new.source.value,
        new.device_id,
        new.urgent,
        new.window_start,
        new.window_end,
        new.notes,
        context_id or uuid.uuid4(),
        at,
        actor,
        split.price_fen,
        split.covered_fen,
        split.copay_fen,
        split.not_eligible_fen,
        split.programme,
        split.month,
        split.allowance_fen,
        split.allowance_left_fen,
        [{"zh": zh, "en": en} for zh, en in split.reasons],
        new.alert_id,
    )
    assert row is not None
    order = Order.from_row(row)
    event = await append_event(
        conn,
        subject_type="order",
        subject_id=order.id,
        kind="order.created",
        actor=actor,
        to_state=OrderState.NEW.value,
        context_id=order.context_id,
        data={
            "item_code": order.item_code,
            "source": order.source.value,
            **({"alert_id": order.alert_id} if order.alert_id else {}),
            "window_start": order.window_start.isoformat(),
            "window_end": order.window_end.isoformat(),
            "split": split.as_json(),
        },
        at=at,
    )
    return order, event


# action → (states it may start from, state it leads to; None: the state stays, a fact is recorded)
TRANSITIONS: dict[str, tuple[frozenset[OrderState], OrderState | None]] = {
    # an operator sends the first offer, or offers an unfilled order again
    "offer": (frozenset({OrderState.NEW, OrderState.UNFILLED}), OrderState.OFFERED),
    # the ladder: a declined or expired offer goes to the next candidate
    "offer_next": (frozenset({OrderState.OFFERED}), OrderState.OFFERED),
    # an operator takes the order back from the provider(s) it is with and offers it again
    "re_offer": (frozenset({OrderState.OFFERED, OrderState.ACCEPTED}), OrderState.OFFERED),
    "accept": (frozenset({OrderState.OFFERED}), OrderState.ACCEPTED),
    "unfill": (frozenset({OrderState.NEW, OrderState.OFFERED}), OrderState.UNFILLED),
    "check_in": (frozenset({OrderState.ACCEPTED}), OrderState.IN_SERVICE),
    "check_out": (frozenset({OrderState.IN_SERVICE}), OrderState.COMPLETED),
    "confirm": (frozenset({OrderState.COMPLETED}), OrderState.CONFIRMED),
    # a follow-up rating of 1 or 2 (at confirmation or later) is a complaint
    "complain": (frozenset({OrderState.COMPLETED, OrderState.CONFIRMED}), OrderState.COMPLAINT),
    "rate": (frozenset({OrderState.COMPLETED, OrderState.CONFIRMED, OrderState.COMPLAINT}), None),
    "settle": (frozenset({OrderState.CONFIRMED}), OrderState.SETTLED),
    "cancel": (
        frozenset({OrderState.NEW, OrderState.OFFERED, OrderState.ACCEPTED, OrderState.UNFILLED}),
        OrderState.CANCELLED,
    ),
}

# A rating given without a word keeps what the follow-up call noted before.
_FOLLOW_UP_NOTE = "follow_up_note = CASE WHEN $5 = '' THEN o.follow_up_note ELSE $5 END"


def ensure_allowed(order: Order, action: str) -> None:
    """IllegalTransition unless `action` may start from the order's state (read under its row lock)."""
    if order.state not in TRANSITIONS[action][0]:
        raise IllegalTransition(order.id, action, order.state)


# What each action stamps on the row besides the state: a SET clause over $4…, and the names
# of the values that fill those placeholders in order.
_SETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "offer": ("", ()),
    "offer_next": ("", ()),
    "re_offer": ("provider_id = NULL, accepted_at = NULL", ()),
    "accept": ("provider_id = $4, accepted_at = $5", ("value", "at")),
    "unfill": ("", ()),
    "check_in": ("checked_in_at = $4, checked_in_source = $5", ("value", "source")),
    "check_out": ("checked_out_at = $4, checked_out_source = $5", ("value", "source")),
    "confirm": (f"rating = $4, {_FOLLOW_UP_NOTE}, confirmed_at = $6", ("value", "reason", "at")),
    "complain": (
        f"rating = $4, {_FOLLOW_UP_NOTE}, confirmed_at = coalesce(confirmed_at, $6)",
        ("value", "reason", "at"),
    ),
    "rate": (f"rating = $4, {_FOLLOW_UP_NOTE}", ("value", "reason")),
    "settle": ("settled_at = $4, settlement_ref = $5", ("at", "value")),
    "cancel": ("closed_at = $4, close_reason = $5", ("at", "reason")),
}
_RETURNING = ", ".join("o." + c.strip() for c in COLUMNS.split(","))


@dataclass(frozen=True)
class Transition:
    before: OrderState
    order: Order
    event: DomainEvent


async def transition(
    conn: Conn,
    order_id: int,
    action: str,
    *,
    actor: str,
    at: dt.datetime,
    reason: str = "",
    value: Any = None,
    source: EvidenceSource | None = None,
    data: dict[str, Any] | None = None,
) -> Transition:
    """Move an order by `action`; IllegalTransition (naming the current state) when it may not."""
    allowed, target = TRANSITIONS[action]
    sets, names = _SETS[action]
    values = {"at": at, "value": value, "reason": reason, "source": source.value if source else None}
    row = await conn.fetchrow(
        f"""WITH before AS (SELECT id, state FROM service_orders WHERE id = $1 FOR UPDATE)
            UPDATE service_orders o SET state = coalesce($2, o.state){", " + sets if sets else ""}
            FROM before WHERE o.id = before.id AND before.state = ANY($3::text[])
            RETURNING {_RETURNING}, before.state AS before_state""",
        order_id,
        target.value if target else None,
        [s.value for s in allowed],
        *(values[name] for name in names),
    )
    if row is None:
        current = await conn.fetchval("SELECT state FROM service_orders WHERE id = $1", order_id)
        if current is None:
            raise OrderNotFound(f"order {order_id} not found")
        raise IllegalTransition(order_id, action, OrderState(current))
    order = Order.from_row(row)
    before = OrderState(row["before_state"])
    event = await append_event(
        conn,
        subject_type="order",
        subject_id=order_id,
        kind=f"order.{order.state.value}" if before != order.state else f"order.{action}",
        actor=actor,
        from_state=before.value,
        to_state=order.state.value,
        reason=reason,
        context_id=order.context_id,
        data=data,
        at=at,
    )
    return Transition(before=before, order=order, event=event)


async def note(
    conn: Conn,
    order: Order,
    *,
    kind: str,
    actor: str,
    at: dt.datetime,
    reason: str = "",
    data: dict[str, Any] | None = None,
) -> DomainEvent:
    """An event on the order's timeline that does not change its state (an offer answered, a notice)."""
    return await append_event(
        conn,
        subject_type="order",
        subject_id=order.id,
        kind=kind,
        actor=actor,
        reason=reason,
        context_id=order.context_id,
        data=data,
        at=at,
    )


@dataclass(frozen=True)
class VisitEvidence:
    """One report of a check-in or check-out, as it reached us."""

    id: int
    kind: str
    source: EvidenceSource
    at: dt.datetime
    recorded_at: dt.datetime
    actor: str
    call_id: int | None
    note: str

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source.value,
            "at": self.at.isoformat(),
            "recorded_at": self.recorded_at.isoformat(),
            "actor": self.actor,
            "call_id": self.call_id,
            "note": self.note,
        }


async def record_evidence(
    conn: Conn,
    order_id: int,
    *,
    kind: str,
    source: EvidenceSource,
    at: dt.datetime,
    recorded_at: dt.datetime,
    actor: str,
    note: str = "",
    call_id: int | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO order_visit_evidence (order_id, kind, source, at, recorded_at, actor, note, call_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        order_id,
        kind,
        source.value,
        at,
        recorded_at,
        actor,
        note,
        call_id,
    )


async def visit_evidence(conn: Conn, order_id: int) -> list[VisitEvidence]:
    rows = await conn.fetch(
        """SELECT id, kind, source, at, recorded_at, actor, call_id, note FROM order_visit_evidence
           WHERE order_id = $1 ORDER BY id""",
        order_id,
    )
    return [VisitEvidence(**{**dict(r.items()), "source": EvidenceSource(r["source"])}) for r in rows]


async def list_orders(
    conn: Conn,
    *,
    since: dt.datetime | None = None,
    state: OrderState | None = None,
    resident_id: int | None = None,
    provider_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Order], int]:
    """Newest first; `since` filters on when the order was taken."""
    where = """($1::timestamptz IS NULL OR created_at >= $1) AND ($2::text IS NULL OR state = $2)
               AND ($3::bigint IS NULL OR resident_id = $3) AND ($4::bigint IS NULL OR provider_id = $4)"""
    args = (since, state.value if state else None, resident_id, provider_id)
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM service_orders WHERE {where}
            ORDER BY created_at DESC, id DESC LIMIT $5 OFFSET $6""",
        *args,
        limit,
        offset,
    )
    total = await conn.fetchval(f"SELECT count(*) FROM service_orders WHERE {where}", *args)
    return [Order.from_row(r) for r in rows], int(total)
