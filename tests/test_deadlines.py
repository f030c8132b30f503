"""Deadlines as rows: fire once at their time, survive failures, never fire twice across instances."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import pytest

from dispatch.database import Conn, create_pool
from dispatch.deadlines import (
    Deadline,
    DeadlineHandlers,
    DeadlineRunner,
    cancel_deadlines,
    fire_due_deadlines,
    pending_deadlines,
    schedule_deadline,
)
from dispatch.events import DomainEvent, append_event
from dispatch.runtime import Runtime

T0 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)


def recording_handlers(kind: str = "test.step") -> DeadlineHandlers:
    handlers = DeadlineHandlers()

    async def record(conn: Conn, deadline: Deadline, now: dt.datetime) -> list[DomainEvent]:
        event = await append_event(
            conn,
            subject_type=deadline.subject_type,
            subject_id=deadline.subject_id,
            kind="test.fired",
            actor="deadline",
            data={"deadline": deadline.id, "due": deadline.due_at.isoformat()},
            at=now,
        )
        return [event]

    handlers.register(kind, record)
    return handlers


async def fired_count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM events WHERE kind = 'test.fired'"))


async def test_fires_at_its_time_and_only_once(pool: asyncpg.Pool) -> None:
    handlers = recording_handlers()
    async with pool.acquire() as conn:
        await schedule_deadline(
            conn, kind="test.step", subject_type="alert", subject_id=7, due_at=T0 + dt.timedelta(seconds=30)
        )
    early = await fire_due_deadlines(pool, handlers, T0 + dt.timedelta(seconds=29))
    assert early.fired == 0
    on_time = await fire_due_deadlines(pool, handlers, T0 + dt.timedelta(seconds=30, milliseconds=5))
    assert on_time.fired == 1
    assert on_time.lateness == [pytest.approx(0.005)]
    assert [e.kind for e in on_time.events] == ["test.fired"]
    again = await fire_due_deadlines(pool, handlers, T0 + dt.timedelta(hours=1))
    assert again.fired == 0
    assert await fired_count(pool) == 1


async def test_cancelled_deadline_never_fires(pool: asyncpg.Pool) -> None:
    handlers = recording_handlers()
    async with pool.acquire() as conn:
        await schedule_deadline(conn, kind="test.step", subject_type="alert", subject_id=1, due_at=T0)
        await schedule_deadline(conn, kind="other", subject_type="alert", subject_id=1, due_at=T0)
        assert await cancel_deadlines(conn, subject_type="alert", subject_id=1, kinds=("other",), at=T0) == 1
        assert [d.kind for d in await pending_deadlines(conn, "alert", 1)] == ["test.step"]
        assert await cancel_deadlines(conn, subject_type="alert", subject_id=1, at=T0) == 1
    report = await fire_due_deadlines(pool, handlers, T0 + dt.timedelta(minutes=1))
    assert report.fired == 0
    assert await fired_count(pool) == 0


async def test_a_failing_handler_is_retried_and_does_not_block_others(pool: asyncpg.Pool) -> None:
    handlers = recording_handlers()
    calls = 0

    async def flaky(conn: Conn, deadline: Deadline, now: dt.datetime) -> list[DomainEvent]:
        nonlocal calls
        calls += 1
        if calls <= 2:  # the batch's fast path, then its step-by-step rerun
            raise RuntimeError("the SMS table is locked")
        return []

    handlers.register("test.flaky", flaky)
    async with pool.acquire() as conn:
        await schedule_deadline(conn, kind="test.flaky", subject_type="x", subject_id=1, due_at=T0)
        await schedule_deadline(conn, kind="test.step", subject_type="x", subject_id=2, due_at=T0)
    first = await fire_due_deadlines(pool, handlers, T0)
    assert (first.fired, first.failed) == (1, 1)
    row = await pool.fetchrow("SELECT attempts, last_error, due_at FROM deadlines WHERE kind = 'test.flaky'")
    assert row is not None
    assert row["attempts"] == 1
    assert "the SMS table is locked" in row["last_error"]
    assert row["due_at"] > T0
    later = await fire_due_deadlines(pool, handlers, T0 + dt.timedelta(minutes=10))
    assert (later.fired, later.failed) == (1, 0)
    assert calls == 3


async def test_a_buggy_handler_cannot_stop_other_steps(pool: asyncpg.Pool) -> None:
    handlers = recording_handlers()

    async def buggy(conn: Conn, deadline: Deadline, now: dt.datetime) -> list[DomainEvent]:
        raise TypeError("a bug in one lane")

    handlers.register("test.buggy", buggy)
    async with pool.acquire() as conn:
        await schedule_deadline(conn, kind="test.buggy", subject_type="x", subject_id=1, due_at=T0)
        await schedule_deadline(conn, kind="test.step", subject_type="x", subject_id=2, due_at=T0)
    report = await fire_due_deadlines(pool, handlers, T0, workers=2)
    assert (report.fired, report.failed) == (1, 1)
    assert await fired_count(pool) == 1


async def test_unknown_kind_is_kept_and_reported(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await schedule_deadline(conn, kind="nobody.handles", subject_type="x", subject_id=1, due_at=T0)
    report = await fire_due_deadlines(pool, DeadlineHandlers(), T0)
    assert report.failed == 1
    assert await pool.fetchval("SELECT fired_at FROM deadlines") is None


async def test_handler_rollback_leaves_deadline_pending(pool: asyncpg.Pool) -> None:
    """What a crash mid-way looks like: the handler's work and the fired mark go together or not at all."""
    handlers = DeadlineHandlers()

    async def half_done(conn: Conn, deadline: Deadline, now: dt.datetime) -> list[DomainEvent]:
        await append_event(conn, subject_type="x", subject_id=1, kind="test.fired", actor="d", at=now)
        raise ValueError("crash after the first write")

    handlers.register("test.step", half_done)
    async with pool.acquire() as conn:
        await schedule_deadline(conn, kind="test.step", subject_type="x", subject_id=1, due_at=T0)
    await fire_due_deadlines(pool, handlers, T0)
    assert await fired_count(pool) == 0
    assert await pool.fetchval("SELECT fired_at FROM deadlines") is None


async def test_two_instances_never_fire_one_twice(pool: asyncpg.Pool, db_dsn: str) -> None:
    handlers = recording_handlers()
    async with pool.acquire() as conn:
        for i in range(500):
            await schedule_deadline(
                conn,
                kind="test.step",
                subject_type="alert",
                subject_id=i,
                due_at=T0 + dt.timedelta(milliseconds=i),
            )
    other = await create_pool(db_dsn, min_size=1, max_size=2)
    try:
        reports = await asyncio.gather(
            fire_due_deadlines(pool, handlers, T0 + dt.timedelta(seconds=1), batch=20),
            fire_due_deadlines(other, handlers, T0 + dt.timedelta(seconds=1), batch=20),
            fire_due_deadlines(pool, handlers, T0 + dt.timedelta(seconds=1), batch=20),
        )
    finally:
        await other.close()
    assert sum(r.fired for r in reports) == 500
    assert await fired_count(pool) == 500
    duplicates = await pool.fetchval(
        "SELECT count(*) FROM (SELECT data->>'deadline' FROM events GROUP BY 1 HAVING count(*) > 1) d"
    )
    assert duplicates == 0


async def test_runner_fires_on_notify_and_publishes(runtime: Runtime) -> None:
    handlers = recording_handlers()
    fired: asyncio.Queue[DomainEvent] = asyncio.Queue()

    async def collect(event: DomainEvent) -> None:
        await fired.put(event)

    subscription = runtime.bus.subscribe("test", collect, prefix="test.")
    runner = DeadlineRunner(runtime, handlers, runtime.config.database.url, poll_seconds=30)
    await runner.start()
    try:
        async with runtime.pool.acquire() as conn:
            await schedule_deadline(
                conn, kind="test.step", subject_type="alert", subject_id=3, due_at=runtime.clock()
            )
        # poll_seconds is 30: only the NOTIFY can wake the runner in time for this wait.
        event = await asyncio.wait_for(fired.get(), timeout=10)
        assert event.subject_id == 3
        health = await runner.health()
        assert health.ok
    finally:
        await runner.stop()
        await subscription.close()
