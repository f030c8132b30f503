"""Intake's two steps on a real PostgreSQL and real sockets: a sender is answered once its alarm is
committed, without waiting for the alert work behind it; an alarm stored but not yet handled (a
crash between the steps, a database outage, a failure) is never forgotten: it is handled at the
next start or by the retry sweep, and one that cannot be handled reaches the floor as a notice."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest

from dispatch.alert_desk import AlertDesk
from dispatch.config import Config
from dispatch.events import timeline
from dispatch.runtime import Runtime
from telephony.alarms import dc09
from telephony.alarms.dc09_server import Dc09Server, frame_message
from telephony.alarms.intake import PendingAlarms, record_messages, settled, store
from telephony.alarms.kinds import Outcome
from telephony.alarms.messages import IntakeResult, Message
from tests.alarm_helpers import alarm_config, handled, sia, unit
from tests.helpers import FakeClock

T0 = dt.datetime(2026, 12, 7, 2, 0, tzinfo=dt.UTC)


def framed(frame: bytes, at: dt.datetime = T0) -> Message:
    return frame_message(dc09.decode_frame(frame, key_for=lambda _: None, now=at), at, 3600.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def runtime(config: Config, pool: asyncpg.Pool, clock: FakeClock) -> Runtime:
    return Runtime(config=alarm_config(config), pool=pool, clock=clock)


@pytest.fixture
async def server(config: Config, pool: asyncpg.Pool) -> AsyncIterator[Dc09Server]:
    runtime = Runtime(config=alarm_config(config), pool=pool)
    server = Dc09Server(runtime, AlertDesk(runtime), environ={})
    await server.start()
    yield server
    await server.stop()


async def test_the_ack_comes_with_the_commit_not_after_the_alert(
    server: Dc09Server, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        resident, _ = await unit(conn, "F00001")
    assert server.port
    blocker = await pool.acquire()
    try:
        # Hold off every new alert (as a slow transaction of the floor's would): the handler waits.
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE alerts IN SHARE ROW EXCLUSIVE MODE")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        frame = sia("F00001", 1, at=dt.datetime.now(dt.UTC))
        writer.write(frame)
        answer = await asyncio.wait_for(reader.readuntil(b"\r"), 10)
        # the unit missed the ACK and sends again: a repeat, answered again, handed over again
        writer.write(frame)
        again = await asyncio.wait_for(reader.readuntil(b"\r"), 10)
        writer.close()
        assert b'"ACK"' in answer
        assert b'"ACK"' in again
        row = await pool.fetchrow("SELECT kind, outcome, alert_id, handled_at FROM alarms")
        assert row is not None
        assert (row["kind"], row["outcome"], row["alert_id"], row["handled_at"]) == (
            "sos",
            "pending",
            None,
            None,
        )
        await tx.rollback()
    finally:
        await pool.release(blocker)
    await handled(server.runtime, server.desk)
    row = await pool.fetchrow("SELECT outcome, alert_id, handled_at, received_at FROM alarms")
    assert row is not None
    assert row["outcome"] == "alert_raised"
    assert row["handled_at"] >= row["received_at"]
    alert = await pool.fetchrow(
        "SELECT resident_id, kind, raised_at FROM alerts WHERE id = $1", row["alert_id"]
    )
    assert alert is not None
    # the escalation clock counts from the alarm's receipt, not from when it was handled
    assert (alert["resident_id"], alert["kind"], alert["raised_at"]) == (resident, "sos", row["received_at"])
    # one alarm, counted once, though handed to the handler twice
    labels = {"source": "dc09", "kind": "sos", "outcome": "alert_raised"}
    assert server.runtime.metrics.get_sample_value("careline_alarms_total", labels) == 1.0
    # how long the alert took after the receipt, for supervisors (here: at least the held lock)
    assert server.runtime.metrics.get_sample_value("careline_alarm_handled_seconds_count") == 1.0
    assert (server.runtime.metrics.get_sample_value("careline_alarm_handled_seconds_sum") or 0) > 0


async def test_what_a_crash_left_pending_is_handled_at_start(runtime: Runtime, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        resident, device = await unit(conn, "F00002")
        # the first step alone, as when the process died right after the commit and the ACK
        [press, test] = await record_messages(
            conn, runtime.config.alarms, [framed(sia("F00002", 1)), framed(sia("F00002", 2, "RP", "000"))]
        )
    assert isinstance(press, IntakeResult)
    assert isinstance(test, IntakeResult)
    assert press.alarms[0].outcome is Outcome.PENDING
    assert test.alarms[0].outcome is Outcome.LIFE_SIGN
    desk = AlertDesk(runtime)
    pending = PendingAlarms(runtime, desk)
    await pending.start()
    try:
        await asyncio.wait_for(settled(runtime, desk), 10)
        # what the last run left is handled, not reported stuck
        assert (await pending.health()).detail == {
            "status": "ok",
            "pending": 0,
            "recovered_at_start": 1,
            "error": None,
        }
    finally:
        await pending.stop()
    rows = await pool.fetch("SELECT kind, outcome, alert_id FROM alarms ORDER BY id")
    assert [(r["kind"], r["outcome"]) for r in rows] == [("sos", "alert_raised"), ("test", "life_sign")]
    alert = await pool.fetchrow(
        "SELECT resident_id, device_id, triggers FROM alerts WHERE id = $1", rows[0]["alert_id"]
    )
    assert alert is not None
    assert (alert["resident_id"], alert["device_id"], alert["triggers"]) == (resident, device, 1)
    async with pool.acquire() as conn:
        raised = [e for e in await timeline(conn, "alert", rows[0]["alert_id"]) if e.kind == "alert.raised"]
    assert [e.actor for e in raised] == ["dc09:F00002"]


async def test_an_alarm_that_cannot_be_handled_stays_pending_and_reaches_the_floor(
    runtime: Runtime, clock: FakeClock, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="telephony.alarms.intake")
    async with pool.acquire() as conn:
        broken, _ = await unit(conn, "F00003")
        await unit(conn, "F00004")
        # A fault of the database's own (here a trigger) fails the alert of one resident only.
        await conn.execute(
            f"""CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.resident_id = {broken} THEN RAISE EXCEPTION 'refused'; END IF;
                    RETURN NEW;
                END $$;
                CREATE TRIGGER refuse BEFORE INSERT ON alerts FOR EACH ROW EXECUTE FUNCTION refuse();"""
        )
    desk = AlertDesk(runtime)
    stored = await asyncio.gather(
        store(runtime, desk, framed(sia("F00003", 1))), store(runtime, desk, framed(sia("F00004", 1)))
    )
    # both committed, so both senders are answered, whatever handling makes of them
    assert [s.result.alarms[0].outcome for s in stored] == [Outcome.PENDING, Outcome.PENDING]
    failed, fine = await asyncio.gather(*(s.outcome() for s in stored), return_exceptions=True)
    assert isinstance(failed, asyncpg.RaiseError)
    assert isinstance(fine, IntakeResult)
    assert fine.alarms[0].outcome is Outcome.ALERT_RAISED  # the other alarm of the batch went on
    failed_id = stored[0].result.alarms[0].alarm_id
    assert await pool.fetchval("SELECT outcome FROM alarms WHERE id = $1", failed_id) == "pending"
    notice = await pool.fetchrow(
        "SELECT severity, text, subject_type, subject_id FROM notices WHERE kind = 'alarm.unhandled'"
    )
    assert notice is not None
    assert (notice["severity"], notice["subject_type"], notice["subject_id"]) == (
        "critical",
        "alarm",
        failed_id,
    )
    # what the operator needs to act by hand: what, whose, when (Shanghai time)
    name = await pool.fetchval("SELECT name FROM residents WHERE id = $1", broken)
    assert notice["text"].startswith(
        f"报警 {failed_id}（紧急呼叫，老人 {name}（档案 {broken}），10:00:00 收到）"
    )
    assert f"Alarm {failed_id} (SOS, resident {name} (#{broken}), received 10:00:00)" in notice["text"]
    assert f"alarms [{failed_id}] stored but not handled (RaiseError)" in caplog.text

    pending = PendingAlarms(runtime, desk)
    # not yet pending for a retry interval: the sweep leaves it to the first try
    assert await pending.sweep() == 0
    clock.advance(seconds=runtime.config.alarms.handling_retry_seconds)
    assert await pending.sweep() == 1  # tried again, fails again: still one notice, not one a try
    await asyncio.wait_for(settled(runtime, desk), 10)
    assert await pool.fetchval("SELECT count(*) FROM notices WHERE kind = 'alarm.unhandled'") == 1
    assert (await pending.health()).ok is False

    await pool.execute("DROP TRIGGER refuse ON alerts")
    assert await pending.sweep() == 1
    await asyncio.wait_for(settled(runtime, desk), 10)
    row = await pool.fetchrow("SELECT outcome, alert_id FROM alarms WHERE id = $1", failed_id)
    assert row is not None
    assert row["outcome"] == "alert_raised"
    assert await pool.fetchval("SELECT resident_id FROM alerts WHERE id = $1", row["alert_id"]) == broken
    assert await pending.sweep() == 0
