"""Messages that arrive together share one transaction and one arrival statement; each must still
end exactly as it would alone: stored once, repeats answered from their receipt, emergencies acted
on, a bad message refused without taking the others down. On a real PostgreSQL.

`asyncio.gather` over `take` queues every message before the first writer runs, so each test's
messages go through `_Intake` as one batch (stored in one statement, then handled in one transaction).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import asyncpg
import pytest

from dispatch.alert_desk import Actor, AlertDesk
from dispatch.config import Config
from dispatch.runtime import Runtime
from telephony.alarms import dc09
from telephony.alarms.dc09_server import frame_message
from telephony.alarms.intake import take
from telephony.alarms.kinds import AlarmKind, AlarmSource, Outcome, Qualifier
from telephony.alarms.messages import DeviceKey, IncomingAlarm, IntakeResult, Message, ReceiptConflict
from tests.alarm_helpers import alarm_config, sia, unit
from tests.helpers import FakeClock

T0 = dt.datetime(2026, 11, 23, 18, 0, tzinfo=dt.UTC)


@pytest.fixture
def alarm_runtime(config: Config, pool: asyncpg.Pool) -> Runtime:
    return Runtime(config=alarm_config(config), pool=pool, clock=FakeClock(T0))


@pytest.fixture
def desk(alarm_runtime: Runtime) -> AlertDesk:
    return AlertDesk(alarm_runtime)


def framed(frame: bytes, at: dt.datetime = T0) -> Message:
    return frame_message(dc09.decode_frame(frame, key_for=lambda _: None, now=at), at, 3600.0)


def cloud(
    device: str,
    event: str,
    *,
    battery: int | None = None,
    body: str = "{}",
    at: dt.datetime = T0,
    kind: AlarmKind = AlarmKind.TEST,
) -> Message:
    """A device-cloud post as the HTTP adapter hands it over (a reused event id is a conflict)."""
    return Message(
        source=AlarmSource.HTTP,
        sender=f"http:bench:{device}",
        actor="integration:bench",
        device=DeviceKey(cloud_id=device),
        payload=body,
        alarms=(IncomingAlarm(kind, Qualifier.NEW, kind.value, sender_at=at),),
        received_at=at,
        receipt_key=event,
        digest=body,
        reused_key_is_conflict=True,
        battery_percent=battery,
    )


async def take_together(
    runtime: Runtime, desk: AlertDesk, messages: list[Message]
) -> list[IntakeResult | BaseException]:
    return await asyncio.gather(*(take(runtime, desk, m) for m in messages), return_exceptions=True)


async def test_a_mixed_batch_ends_as_each_message_would_alone(
    alarm_runtime: Runtime, desk: AlertDesk, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="telephony.alarms.intake")
    async with pool.acquire() as conn:
        _, quiet = await unit(conn, "B00001")
        resident, pressed = await unit(conn, "B00002")
        _, supervised = await unit(conn, "B00003")
    test_report = sia("B00001", 1, "RP", "000")
    results = await take_together(
        alarm_runtime,
        desk,
        [
            framed(test_report),
            framed(sia("B00002", 1)),
            framed(test_report),  # a resend in the batch of its original
            framed(sia("B00002", 2)),  # a second press: joins the alert the first raised
            framed(dc09.encode_message("NULL", 3, "B00003", receiver="1", line="1", timestamp=T0)),
            framed(sia("DEAD07", 1, "RP", "000")),  # nobody registered this unit
        ],
    )
    assert not any(isinstance(r, BaseException) for r in results), results
    test, first, resend, second, supervision, unknown = (r for r in results if isinstance(r, IntakeResult))

    assert (test.duplicate, test.device_id, test.alarms[0].outcome) == (False, quiet, Outcome.LIFE_SIGN)
    assert resend.duplicate
    assert resend.alarms == test.alarms
    assert first.alarms[0].outcome is Outcome.ALERT_RAISED
    assert second.alarms[0].outcome is Outcome.ALERT_JOINED
    assert second.alarms[0].alert_id == first.alarms[0].alert_id
    assert await pool.fetchval("SELECT triggers FROM alerts WHERE resident_id = $1", resident) == 2
    assert (supervision.alarms, supervision.device_id) == ((), supervised)
    assert unknown.device_id is None
    assert unknown.alarms[0].outcome is Outcome.LIFE_SIGN

    stored = await pool.fetch("SELECT id, device_id, kind, outcome FROM alarms ORDER BY id")
    assert sorted((r["device_id"] or 0, r["kind"], r["outcome"]) for r in stored) == [
        (0, "test", "life_sign"),  # the unregistered unit
        (quiet, "test", "life_sign"),
        (pressed, "sos", "alert_joined"),
        (pressed, "sos", "alert_raised"),
    ]
    # every receipt names exactly the rows its message stored, so any later resend finds them
    receipts = await pool.fetch("SELECT alarm_ids FROM alarm_receipts ORDER BY alarm_ids")
    assert sorted(i for r in receipts for i in r["alarm_ids"]) == [r["id"] for r in stored]
    presses = [a.alarm_id for a in (*first.alarms, *second.alarms)]
    assert [r["id"] for r in stored if r["kind"] == "sos"] == presses
    seen = await pool.fetch(
        "SELECT last_seen_at FROM devices WHERE id = ANY($1::bigint[])", [quiet, pressed, supervised]
    )
    assert [r["last_seen_at"] for r in seen] == [T0] * 3
    assert "failed its shared transaction" not in caplog.text  # one batch, not each alone


async def test_a_reused_event_id_is_refused_and_the_rest_of_its_batch_is_stored(
    alarm_runtime: Runtime, desk: AlertDesk, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        _, device = await unit(conn, "C00001", cloud_id="cloud-1")
    results = await take_together(
        alarm_runtime,
        desk,
        [
            cloud("cloud-1", "evt-1", body='{"n": 1}'),
            cloud("cloud-1", "evt-1", body='{"n": 2}'),  # same id, another body
            cloud("cloud-1", "evt-2", body='{"n": 3}'),
        ],
    )
    first, reused, other = results
    assert isinstance(first, IntakeResult)
    assert not first.duplicate
    assert isinstance(reused, ReceiptConflict)
    assert isinstance(other, IntakeResult)
    assert not other.duplicate
    assert await pool.fetchval("SELECT count(*) FROM alarms WHERE device_id = $1", device) == 2


async def test_reports_of_one_device_in_one_batch_leave_the_last_battery_and_the_latest_time(
    alarm_runtime: Runtime, desk: AlertDesk, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        _, device = await unit(conn, "C00002", cloud_id="cloud-2")
    later = T0 + dt.timedelta(seconds=30)
    results = await take_together(
        alarm_runtime,
        desk,
        [
            cloud("cloud-2", "evt-a", battery=80, at=later, body="a"),
            cloud("cloud-2", "evt-b", battery=70, body="b"),
            cloud("cloud-2", "evt-c", body="c"),  # no level reported: the last one that was stays
        ],
    )
    assert all(isinstance(r, IntakeResult) for r in results), results
    row = await pool.fetchrow("SELECT battery_percent, last_seen_at FROM devices WHERE id = $1", device)
    assert row is not None
    assert (row["battery_percent"], row["last_seen_at"]) == (70, later)


async def test_a_message_that_fails_the_shared_transaction_takes_nothing_else_down(
    alarm_runtime: Runtime, desk: AlertDesk, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    async with pool.acquire() as conn:
        _, device = await unit(conn, "C00003", cloud_id="cloud-3")
    caplog.set_level(logging.WARNING, logger="telephony.alarms.intake")
    results = await take_together(
        alarm_runtime,
        desk,
        [
            cloud("cloud-3", "evt-1", body="fine"),
            cloud("cloud-3", "evt-2", body="bad \x00 byte"),  # PostgreSQL cannot store a NUL in text
            cloud("cloud-3", "evt-3", body="fine too"),
        ],
    )
    good, bad, also_good = results
    assert isinstance(good, IntakeResult)
    assert isinstance(also_good, IntakeResult)
    assert isinstance(bad, asyncpg.PostgresError)
    assert await pool.fetchval("SELECT count(*) FROM alarms WHERE device_id = $1", device) == 2
    assert await pool.fetchval("SELECT count(*) FROM alarm_receipts WHERE key = 'evt-2'") == 0
    assert "a batch of 3 alarms failed its shared statement" in caplog.text
    assert "bad" not in caplog.text  # the log names the error's type, never the message's text


async def test_one_devices_messages_keep_their_order_in_a_batch(
    alarm_runtime: Runtime, desk: AlertDesk, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        _, both = await unit(conn, "C00004", cloud_id="cloud-4")
        _, tested = await unit(conn, "C00005", cloud_id="cloud-5")
    results = await take_together(
        alarm_runtime,
        desk,
        [
            cloud("cloud-4", "evt-1", battery=50, body="sos", kind=AlarmKind.SOS),
            cloud("cloud-5", "evt-2", battery=90, body="test"),
            cloud("cloud-4", "evt-3", battery=40, body="test after the press"),
        ],
    )
    press, test, later = (r for r in results if isinstance(r, IntakeResult))
    assert press.alarms[0].outcome is Outcome.ALERT_RAISED
    assert test.alarms[0].outcome is Outcome.LIFE_SIGN
    assert later.alarms[0].outcome is Outcome.LIFE_SIGN
    # cloud-4's press and test were taken in the order sent: the test's level is the last word
    batteries = await pool.fetch(
        "SELECT id, battery_percent FROM devices WHERE id = ANY($1::bigint[]) ORDER BY id", [both, tested]
    )
    assert [r["battery_percent"] for r in batteries] == [40, 90]


async def test_presses_in_one_batch_after_a_close_attach_to_it_or_join_the_new_alert(
    alarm_runtime: Runtime, desk: AlertDesk, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        _, closed_unit = await unit(conn, "D00001")
        await unit(conn, "D00002")
    [first] = await take_together(alarm_runtime, desk, [framed(sia("D00001", 1))])
    assert isinstance(first, IntakeResult)
    closed = first.alarms[0].alert_id
    assert closed is not None
    await desk.cancel(closed, Actor.user("wangfang"), reason="pressed by mistake", false_alarm=True)
    results = await take_together(
        alarm_runtime,
        desk,
        [
            framed(sia("D00001", 2)),  # just after the close: attached to it, twice
            framed(sia("D00001", 3)),
            framed(sia("D00002", 1)),  # another resident: raised, then joined in the same batch
            framed(sia("D00002", 2)),
        ],
    )
    outcomes = [(r.alarms[0].outcome, r.alarms[0].alert_id) for r in results if isinstance(r, IntakeResult)]
    raised = outcomes[2][1]
    assert outcomes == [
        (Outcome.ATTACHED_TO_CLOSED, closed),
        (Outcome.ATTACHED_TO_CLOSED, closed),
        (Outcome.ALERT_RAISED, raised),
        (Outcome.ALERT_JOINED, raised),
    ]
    assert await pool.fetchval("SELECT count(*) FROM alerts") == 2
    assert await pool.fetchval("SELECT count(*) FROM alarms WHERE device_id = $1", closed_unit) == 3
