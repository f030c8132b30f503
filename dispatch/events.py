"""Domain events: the append-only event log, and the in-process bus that fans them out.

Every state change is first an `events` row written in the same transaction
as the change (`append_event`); after the commit, the `DomainEvent` is
published on the `EventBus` for whoever is watching (the console, metrics,
other components).

The bus never lets a slow subscriber slow the publisher: each subscriber has a
bounded queue and its own task. A display subscriber (the console) may drop
events when it falls behind and is told how many it missed; a subscriber that
must not lose events (`lossless=True`) applies back-pressure instead, which is
only for work that persists something and is fast.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from dispatch.database import Conn
from dispatch.tasks import cancel_and_wait

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DomainEvent:
    """Something that happened: `kind` is dotted (`alert.raised`, `call.ringing`, `sms.received`)."""

    kind: str
    subject_type: str
    subject_id: int
    data: dict[str, Any] = field(default_factory=dict)
    # follows one chain: alarm → alert → SMS → reply share a context id
    context_id: uuid.UUID | None = None
    actor: str = "system"
    occurred_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    event_id: int | None = None


EVENT_COLUMNS = (
    "occurred_at, subject_type, subject_id, kind, actor, from_state, to_state, reason, context_id, data"
)
INSERT_EVENT = f"""
INSERT INTO events ({EVENT_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING id
"""


def domain_event(
    *,
    event_id: int,
    subject_type: str,
    subject_id: int,
    kind: str,
    actor: str,
    occurred_at: dt.datetime,
    from_state: str | None = None,
    to_state: str | None = None,
    reason: str = "",
    context_id: uuid.UUID | None = None,
    data: dict[str, Any] | None = None,
) -> DomainEvent:
    """The DomainEvent of an events row written with these values (by append_event, or by a
    statement that writes its row together with the change it records)."""
    payload = dict(data or {})
    if from_state is not None:
        payload.setdefault("from", from_state)
    if to_state is not None:
        payload.setdefault("to", to_state)
    if reason:
        payload.setdefault("reason", reason)
    return DomainEvent(
        kind=kind,
        subject_type=subject_type,
        subject_id=subject_id,
        data=payload,
        context_id=context_id,
        actor=actor,
        occurred_at=occurred_at,
        event_id=event_id,
    )


async def append_event(
    conn: Conn,
    *,
    subject_type: str,
    subject_id: int,
    kind: str,
    actor: str,
    from_state: str | None = None,
    to_state: str | None = None,
    reason: str = "",
    context_id: uuid.UUID | None = None,
    data: dict[str, Any] | None = None,
    at: dt.datetime | None = None,
) -> DomainEvent:
    """Write one event row (in the caller's transaction) and return it as a DomainEvent to publish."""
    occurred = at or dt.datetime.now(dt.UTC)
    event_id = await conn.fetchval(
        INSERT_EVENT,
        occurred,
        subject_type,
        subject_id,
        kind,
        actor,
        from_state,
        to_state,
        reason,
        context_id,
        data or {},
    )
    return domain_event(
        event_id=event_id,
        subject_type=subject_type,
        subject_id=subject_id,
        kind=kind,
        actor=actor,
        occurred_at=occurred,
        from_state=from_state,
        to_state=to_state,
        reason=reason,
        context_id=context_id,
        data=data,
    )


@dataclass(frozen=True)
class TimelineEntry:
    id: int
    occurred_at: dt.datetime
    kind: str
    actor: str
    from_state: str | None
    to_state: str | None
    reason: str
    data: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """One line of a timeline as the API and the console show it."""
        return {
            "at": self.occurred_at.isoformat(),
            "kind": self.kind,
            "actor": self.actor,
            "from": self.from_state,
            "to": self.to_state,
            "reason": self.reason,
            "data": self.data,
        }


async def timeline(conn: Conn, subject_type: str, subject_id: int) -> list[TimelineEntry]:
    rows = await conn.fetch(
        """SELECT id, occurred_at, kind, actor, from_state, to_state, reason, data
           FROM events WHERE subject_type = $1 AND subject_id = $2 ORDER BY id""",
        subject_type,
        subject_id,
    )
    return [TimelineEntry(**dict(r.items())) for r in rows]


Listener = Callable[[DomainEvent], Awaitable[None]]


class Subscription:
    """One subscriber's queue and task; `close()` (or the returned unsubscribe) ends it."""

    def __init__(self, bus: EventBus, name: str, listener: Listener, prefix: str, size: int, lossless: bool):
        self.bus, self.name, self.listener, self.prefix, self.lossless = bus, name, listener, prefix, lossless
        self.queue: asyncio.Queue[DomainEvent] = asyncio.Queue(maxsize=size)
        self.dropped = 0
        self.task = asyncio.create_task(self._run(), name=f"bus:{name}")

    async def _run(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                await self.listener(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A failing listener is logged and never breaks the bus or the publisher.
                log.exception("event listener %s failed on %s", self.name, event.kind)

    async def deliver(self, event: DomainEvent) -> None:
        if not event.kind.startswith(self.prefix):
            return
        if self.lossless:
            await self.queue.put(event)
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped in (1, 100) or self.dropped % 1000 == 0:
                log.warning("subscriber %s is behind; %d events dropped", self.name, self.dropped)

    async def close(self) -> None:
        self.bus._subscriptions.discard(self)
        await cancel_and_wait(self.task)


class EventBus:
    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()

    def subscribe(
        self, name: str, listener: Listener, *, prefix: str = "", size: int = 1000, lossless: bool = False
    ) -> Subscription:
        subscription = Subscription(self, name, listener, prefix, size, lossless)
        self._subscriptions.add(subscription)
        return subscription

    async def publish(self, *events: DomainEvent) -> None:
        """Hand events to every subscriber; call after the transaction that wrote them committed."""
        for event in events:
            for subscription in list(self._subscriptions):
                await subscription.deliver(event)

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.close()
