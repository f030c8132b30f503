"""Deadlines: one mechanism for every timed step (escalations, offer expiry, follow-ups).

A deadline is a row. `fire_due_deadlines(now)` claims due rows with
`FOR UPDATE SKIP LOCKED`, runs each kind's handler in the same transaction and
marks the row fired there too: after a crash the transaction is rolled back and
the deadline fires again after the restart; once committed it never fires
again, and two instances on one database never fire one twice.

The `DeadlineRunner` component only decides *when* to call it: at the next due
time, when a NOTIFY says an earlier deadline was scheduled, and at least every
`poll_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from prometheus_client import Counter, Gauge, Histogram

from dispatch.components import Health
from dispatch.database import Conn
from dispatch.events import DomainEvent
from dispatch.runtime import Runtime
from dispatch.tasks import cancel_and_wait

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "careline_deadlines"


@dataclass(frozen=True)
class Deadline:
    id: int
    kind: str
    subject_type: str
    subject_id: int
    due_at: dt.datetime
    payload: dict[str, Any]
    attempts: int


# A handler does its work on `conn` (inside the firing transaction) and returns the
# domain events to publish once that transaction has committed.
DeadlineHandler = Callable[[Conn, Deadline, dt.datetime], Awaitable[list[DomainEvent]]]


@dataclass
class DeadlineHandlers:
    handlers: dict[str, DeadlineHandler] = field(default_factory=dict)

    def register(self, kind: str, handler: DeadlineHandler) -> None:
        if kind in self.handlers:
            raise ValueError(f"a handler for deadline kind {kind!r} is already registered")
        self.handlers[kind] = handler


@dataclass(frozen=True)
class NewDeadline:
    kind: str
    subject_type: str
    subject_id: int
    due_at: dt.datetime
    payload: dict[str, Any] = field(default_factory=dict)


# One round trip: the rows and the NOTIFY (which PostgreSQL delivers at commit, once per
# transaction since the payload is constant).
INSERT_DEADLINES = """
WITH ins AS (
    INSERT INTO deadlines (kind, subject_type, subject_id, due_at, payload)
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[], $5::jsonb[])
    RETURNING id
), wake AS (SELECT pg_notify($6, '') AS sent)
SELECT ins.id FROM ins, wake
"""


async def schedule_deadlines(conn: Conn, deadlines: list[NewDeadline]) -> list[int]:
    """Add deadlines in the caller's transaction; the runner is woken when it commits."""
    if not deadlines:
        return []
    rows = await conn.fetch(
        INSERT_DEADLINES,
        [d.kind for d in deadlines],
        [d.subject_type for d in deadlines],
        [d.subject_id for d in deadlines],
        [d.due_at for d in deadlines],
        [d.payload for d in deadlines],
        NOTIFY_CHANNEL,
    )
    return [int(r["id"]) for r in rows]


async def schedule_deadline(
    conn: Conn,
    *,
    kind: str,
    subject_type: str,
    subject_id: int,
    due_at: dt.datetime,
    payload: dict[str, Any] | None = None,
) -> int:
    """Add one deadline in the caller's transaction."""
    ids = await schedule_deadlines(conn, [NewDeadline(kind, subject_type, subject_id, due_at, payload or {})])
    return ids[0]


async def cancel_deadlines(
    conn: Conn, *, subject_type: str, subject_id: int, kinds: tuple[str, ...] | None = None, at: dt.datetime
) -> int:
    """Cancel pending deadlines of a subject (all, or only these kinds); returns how many."""
    result: str = await conn.execute(
        """UPDATE deadlines SET cancelled_at = $4
           WHERE subject_type = $1 AND subject_id = $2 AND fired_at IS NULL AND cancelled_at IS NULL
             AND ($3::text[] IS NULL OR kind = ANY($3))""",
        subject_type,
        subject_id,
        list(kinds) if kinds is not None else None,
        at,
    )
    return int(result.split()[-1])


async def bring_forward(
    conn: Conn,
    *,
    kind: str,
    subject_type: str,
    subject_id: int,
    now: dt.datetime,
    payload: dict[str, Any] | None = None,
) -> int:
    """Make pending deadlines of a subject (of this kind, whose payload contains `payload`) due
    now, and wake the runner at commit: an outcome reported early is acted on at once, and the
    row still fires at its own time when the report (or the process) was lost. Returns how many."""
    moved = await conn.fetchval(
        """WITH moved AS (
               UPDATE deadlines SET due_at = $4
               WHERE kind = $1 AND subject_type = $2 AND subject_id = $3 AND payload @> $5::jsonb
                 AND fired_at IS NULL AND cancelled_at IS NULL AND due_at > $4
               RETURNING id)
           SELECT m.n FROM (SELECT count(*) AS n FROM moved) m,
                LATERAL (SELECT CASE WHEN m.n > 0 THEN pg_notify($6, '') END) wake""",
        kind,
        subject_type,
        subject_id,
        now,
        payload or {},
        NOTIFY_CHANNEL,
    )
    return int(moved)


async def pending_deadlines(conn: Conn, subject_type: str, subject_id: int) -> list[Deadline]:
    rows = await conn.fetch(
        """SELECT id, kind, subject_type, subject_id, due_at, payload, attempts FROM deadlines
           WHERE subject_type = $1 AND subject_id = $2 AND fired_at IS NULL AND cancelled_at IS NULL
           ORDER BY due_at, id""",
        subject_type,
        subject_id,
    )
    return [Deadline(**dict(r.items())) for r in rows]


CLAIM_DUE = """
SELECT id, kind, subject_type, subject_id, due_at, payload, attempts
FROM deadlines
WHERE fired_at IS NULL AND cancelled_at IS NULL AND due_at <= $1
ORDER BY due_at, id
LIMIT $2
FOR UPDATE SKIP LOCKED
"""


@dataclass
class FireReport:
    fired: int = 0
    failed: int = 0
    lateness: list[float] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    events: list[DomainEvent] = field(default_factory=list)


def _retry_delay(attempts: int) -> dt.timedelta:
    # A failing handler is retried soon (it may be a passing database error), then less often.
    return dt.timedelta(seconds=min(300.0, 2.0**attempts) * random.uniform(0.8, 1.2))


class _BatchFailed(Exception):
    """A handler failed in the fast path: the batch is rolled back and run again step by step."""


async def fire_due_deadlines(
    pool: asyncpg.Pool, handlers: DeadlineHandlers, now: dt.datetime, *, batch: int = 100, workers: int = 1
) -> FireReport:
    """Fire every deadline due at `now`; the caller publishes `report.events` (already committed).

    `workers` connections claim batches side by side (SKIP LOCKED keeps them apart).
    """
    reports = await asyncio.gather(*(_fire_worker(pool, handlers, now, batch) for _ in range(workers)))
    merged = FireReport()
    for report in reports:
        merged.fired += report.fired
        merged.failed += report.failed
        merged.lateness += report.lateness
        merged.kinds += report.kinds
        merged.events += report.events
    return merged


async def _fire_worker(
    pool: asyncpg.Pool, handlers: DeadlineHandlers, now: dt.datetime, batch: int
) -> FireReport:
    report = FireReport()
    async with pool.acquire() as conn:
        while True:
            try:
                claimed = await _fire_batch_fast(conn, handlers, now, batch, report)
            except _BatchFailed:
                claimed = await _fire_batch_careful(conn, handlers, now, batch, report)
            if claimed < batch:
                return report


async def _fire_batch_fast(
    conn: Conn, handlers: DeadlineHandlers, now: dt.datetime, batch: int, report: FireReport
) -> int:
    """The common case, all steps succeed: no savepoint per step, one UPDATE marks them all fired."""
    events: list[DomainEvent] = []
    async with conn.transaction():
        deadlines = _in_lock_order(await conn.fetch(CLAIM_DUE, now, batch))
        for deadline in deadlines:
            handler = handlers.handlers.get(deadline.kind)
            if handler is None:
                raise _BatchFailed
            try:
                events.extend(await handler(conn, deadline, now))
            except HANDLER_ERRORS as exc:
                raise _BatchFailed from exc
        await conn.execute(
            "UPDATE deadlines SET fired_at = $2 WHERE id = ANY($1::bigint[])", [d.id for d in deadlines], now
        )
    for deadline in deadlines:
        _count_fired(report, deadline, now)
    report.events.extend(events)
    return len(deadlines)


async def _fire_batch_careful(
    conn: Conn, handlers: DeadlineHandlers, now: dt.datetime, batch: int, report: FireReport
) -> int:
    """A step failed: each one in its own savepoint, so one broken step holds back no other."""
    events: list[DomainEvent] = []
    fired: list[Deadline] = []
    async with conn.transaction():
        rows = await conn.fetch(CLAIM_DUE, now, batch)
        for deadline in _in_lock_order(rows):
            if await _fire_one(conn, handlers, deadline, now, events):
                fired.append(deadline)
            else:
                report.failed += 1
    for deadline in fired:
        _count_fired(report, deadline, now)
    report.events.extend(events)
    return len(rows)


def _in_lock_order(rows: list[asyncpg.Record]) -> list[Deadline]:
    """Steps lock their subject (an alert, an order): taking subjects in one order in every
    worker's batch means two workers wait for each other but never deadlock."""
    deadlines = [Deadline(**dict(row.items())) for row in rows]
    return sorted(deadlines, key=lambda d: (d.subject_type, d.subject_id, d.due_at, d.id))


def _count_fired(report: FireReport, deadline: Deadline, now: dt.datetime) -> None:
    report.fired += 1
    report.kinds.append(deadline.kind)
    report.lateness.append((now - deadline.due_at).total_seconds())


# A step is isolated like a bus listener: whatever it raises (a database error, or a bug in
# one lane's handler) is logged and retried later, and never stops the other escalations.
HANDLER_ERRORS = (Exception,)


async def _fire_one(
    conn: Conn, handlers: DeadlineHandlers, deadline: Deadline, now: dt.datetime, events: list[DomainEvent]
) -> bool:
    handler = handlers.handlers.get(deadline.kind)
    try:
        if handler is None:
            raise LookupError(f"no handler registered for deadline kind {deadline.kind!r}")
        async with conn.transaction():
            events.extend(await handler(conn, deadline, now))
            await conn.execute("UPDATE deadlines SET fired_at = $2 WHERE id = $1", deadline.id, now)
    except HANDLER_ERRORS as exc:
        log.exception("deadline %s (%s) failed; will retry", deadline.id, deadline.kind)
        await conn.execute(
            "UPDATE deadlines SET attempts = attempts + 1, last_error = $2, due_at = $3 WHERE id = $1",
            deadline.id,
            f"{type(exc).__name__}: {exc}"[:500],
            now + _retry_delay(deadline.attempts + 1),
        )
        return False
    return True


class DeadlineRunner:
    """Calls `fire_due_deadlines` on time; owns its task and its LISTEN connection."""

    name = "deadlines"

    def __init__(
        self,
        runtime: Runtime,
        handlers: DeadlineHandlers,
        dsn: str,
        *,
        poll_seconds: float = 1.0,
        workers: int = 4,
    ) -> None:
        self.runtime = runtime
        self.workers = workers
        self.handlers = handlers
        self.dsn = dsn
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncpg.Connection | None = None
        self.last_run: dt.datetime | None = None
        self.last_error: str | None = None
        self._fired = Counter(
            "careline_deadlines_fired", "Deadlines fired", ["kind"], registry=runtime.metrics
        )
        self._failed = Counter(
            "careline_deadlines_failed", "Deadline handler failures", registry=runtime.metrics
        )
        self._lateness = Histogram(
            "careline_deadline_lateness_seconds",
            "How late deadlines fire after they are due",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=runtime.metrics,
        )
        self._pending = Gauge(
            "careline_deadlines_pending", "Deadlines not yet fired", registry=runtime.metrics
        )

    async def start(self) -> None:
        await self._listen()
        self._task = asyncio.create_task(self._loop(), name="deadline-runner")

    async def _listen(self) -> None:
        try:
            self._listener = await asyncpg.connect(self.dsn)
            await self._listener.add_listener(NOTIFY_CHANNEL, self._on_notify)
        except (OSError, asyncpg.PostgresError) as exc:
            # Polling still fires every deadline; NOTIFY only makes early ones prompt.
            log.warning("deadline LISTEN unavailable (%s); polling only", exc)
            self._listener = None

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            wait = self.poll_seconds
            try:
                now = self.runtime.clock()
                report = await fire_due_deadlines(self.runtime.pool, self.handlers, now, workers=self.workers)
                self.last_run, self.last_error = now, None
                for late in report.lateness:
                    self._lateness.observe(max(0.0, late))
                self._failed.inc(report.failed)
                for kind in report.kinds:
                    self._fired.labels(kind).inc()
                await self.runtime.bus.publish(*report.events)
                next_due, pending = await self._next_due()
                self._pending.set(pending)
                if next_due is not None:
                    wait = min(wait, max(0.0, (next_due - self.runtime.clock()).total_seconds()))
                if self._listener is None or self._listener.is_closed():
                    await self._listen()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("deadline runner: database unavailable (%s); retrying", exc)
            except Exception as exc:
                # The runner must outlive any bug: a dead runner is every escalation lost.
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("deadline runner round failed; carrying on")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            self._wake.clear()

    async def _next_due(self) -> tuple[dt.datetime | None, int]:
        row = await self.runtime.pool.fetchrow(
            """SELECT min(due_at) AS next, count(*) AS n
               FROM deadlines WHERE fired_at IS NULL AND cancelled_at IS NULL"""
        )
        assert row is not None
        return row["next"], int(row["n"])

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        if self._listener is not None and not self._listener.is_closed():
            await self._listener.close()
        self._listener = None

    async def health(self) -> Health:
        ok = self._task is not None and not self._task.done() and self.last_error is None
        return Health(
            ok,
            {
                "status": "ok" if ok else "degraded",
                "last_run": self.last_run.isoformat() if self.last_run else None,
                "error": self.last_error,
                "notify": self._listener is not None,
            },
        )
