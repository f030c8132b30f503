"""What each alarm means, on a real PostgreSQL: alerts raised and joined, notes, notices, receipts.

The messages are built from real frames (`frame_message` over `decode_frame`), so the
path is the receiver's without its sockets; the clock is injected.
"""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from dispatch.alert_desk import Actor, AlertDesk
from dispatch.alerts import AlertState, get_alert
from dispatch.config import Config
from dispatch.events import timeline
from dispatch.runtime import Runtime
from telephony.alarms import dc09
from telephony.alarms.cid_intake import ingest_contact_id
from telephony.alarms.contact_id import ContactIdError, build_contact_id
from telephony.alarms.dc09_server import frame_message
from telephony.alarms.intake import take
from telephony.alarms.kinds import Outcome
from telephony.alarms.messages import IntakeResult
from tests.alarm_helpers import alarm_config, sia, unit
from tests.helpers import FakeClock

T0 = dt.datetime(2026, 11, 23, 18, 0, tzinfo=dt.UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def alarm_runtime(config: Config, pool: asyncpg.Pool, clock: FakeClock) -> Runtime:
    return Runtime(config=alarm_config(config), pool=pool, clock=clock)


@pytest.fixture
def desk(alarm_runtime: Runtime) -> AlertDesk:
    return AlertDesk(alarm_runtime)


async def send(runtime: Runtime, desk: AlertDesk, frame: bytes) -> IntakeResult:
    now = runtime.clock()
    decoded = dc09.decode_frame(frame, key_for=lambda _: None, now=now)
    return await take(runtime, desk, frame_message(decoded, now, 3600.0))


async def count(pool: asyncpg.Pool, table: str) -> int:
    return int(await pool.fetchval(f"SELECT count(*) FROM {table}"))


async def test_press_raises_repeat_joins_resend_stores_nothing(
    alarm_runtime: Runtime, desk: AlertDesk, pool: asyncpg.Pool, clock: FakeClock
) -> None:
    async with pool.acquire() as conn:
        resident, device = await unit(conn, "A1B2C3")
    first = await send(alarm_runtime, desk, sia("A1B2C3", 1, at=T0))
    assert not first.duplicate
    assert first.device_id == device
    [alarm] = first.alarms
    assert alarm.outcome is Outcome.ALERT_RAISED
    assert alarm.alert_id is not None
    alert = await pool.fetchrow("SELECT resident_id, kind, source, triggers FROM alerts")
    assert alert is not None
    assert dict(alert.items()) == {"resident_id": resident, "kind": "sos", "source": "alarm", "triggers": 1}

    resend = await send(alarm_runtime, desk, sia("A1B2C3", 1, at=T0))
    assert resend.duplicate
    assert resend.alarms == first.alarms
    assert await count(pool, "alarms") == 1

    clock.advance(seconds=5)
    second = await send(alarm_runtime, desk, sia("A1B2C3", 2))
    assert second.alarms[0].outcome is Outcome.ALERT_JOINED
    assert second.alarms[0].alert_id == alarm.alert_id
    assert await pool.fetchval("SELECT triggers FROM alerts") == 2
    assert await count(pool, "alarms") == 2
    seen = await pool.fetchval("SELECT last_seen_at FROM devices WHERE id = $1", device)
    assert seen == clock.now


async def test_restore_and_cancel_are_notes_and_never_close_the_alert(
    alarm_runtime: Runtime, desk: AlertDesk, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        await unit(conn, "00C0DE")
    raised = await send(alarm_runtime, desk, sia("00C0DE", 1, "FA"))
    alert_id = raised.alarms[0].alert_id
    assert alert_id is not None
    restored = await send(alarm_runtime, desk, sia("00C0DE", 2, "FR"))
    assert restored.alarms[0].outcome is Outcome.RESTORE_NOTED
    assert restored.alarms[0].alert_id == alert_id
    cancelled = await send(alarm_runtime, desk, sia("00C0DE", 3, "OC"))
    assert cancelled.alarms[0].outcome is Outcome.CANCEL_NOTED
    async with pool.acquire() as conn:
        kinds = [e.kind for e in await timeline(conn, "alert", alert_id)]
        alert = await get_alert(conn, alert_id)
    assert kinds == ["alert.raised", "alarm.restored", "alarm.cancel_requested"]
    assert alert.state is AlertState.RAISED
    assert await pool.fetchval("SELECT kind FROM notices") == "alarm.cancel_requested"


async def test_press_just_after_close_is_attached_later_one_opens_a_new_alert(
    alarm_runtime: Runtime, desk: AlertDesk, pool: asyncpg.Pool, clock: FakeClock
) -> None:
    async with pool.acquire() as conn:
        await unit(conn, "5050AA")
    first = await send(alarm_runtime, desk, sia("5050AA", 1))
    alert_id = first.alarms[0].alert_id
    assert alert_id is not None
    await desk.cancel(alert_id, Actor.user("wangfang"), reason="pressed by mistake", false_alarm=True)
    clock.advance(seconds=30)
    again = await send(alarm_runtime, desk, sia("5050AA", 2))
    assert again.alarms[0].outcome is Outcome.ATTACHED_TO_CLOSED
    assert again.alarms[0].alert_id == alert_id
    assert await pool.fetchval("SELECT severity FROM notices WHERE kind = 'alarm.call_back'") == "critical"
    assert await count(pool, "alerts") == 1
    clock.advance(seconds=alarm_runtime.config.alarms.rejoin_window_seconds + 1)
    later = await send(alarm_runtime, desk, sia("5050AA", 3))
    assert later.alarms[0].outcome is Outcome.ALERT_RAISED
    assert later.alarms[0].alert_id != alert_id


async def test_technical_faults_raise_one_notice_and_no_alert(
    alarm_runtime: Runtime, desk: AlertDesk, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        _, device = await unit(conn, "BA77E7")
    lost = await send(alarm_runtime, desk, sia("BA77E7", 1, "AT", "000"))
    again = await send(alarm_runtime, desk, sia("BA77E7", 2, "AT", "000"))
    assert [lost.alarms[0].outcome, again.alarms[0].outcome] == [Outcome.MAINTENANCE, Outcome.DEVICE_UPDATED]
    assert await pool.fetchval("SELECT mains_lost_at FROM devices WHERE id = $1", device) == T0
    restored = await send(alarm_runtime, desk, sia("BA77E7", 3, "AR", "000"))
    assert restored.alarms[0].outcome is Outcome.DEVICE_UPDATED
    assert await pool.fetchval("SELECT mains_lost_at FROM devices WHERE id = $1", device) is None
    test = await send(alarm_runtime, desk, sia("BA77E7", 4, "RP", "000"))
    assert test.alarms[0].outcome is Outcome.LIFE_SIGN
    assert await count(pool, "alerts") == 0
    assert await pool.fetchval("SELECT count(*) FROM notices WHERE kind = 'device.mains_loss'") == 1


async def test_supervision_updates_last_seen_and_stores_no_alarm(
    alarm_runtime: Runtime, desk: AlertDesk, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        _, device = await unit(conn, "0FF1CE")
    frame = dc09.encode_message("NULL", 7, "0FF1CE", receiver="1", line="1", timestamp=T0)
    result = await send(alarm_runtime, desk, frame)
    assert result.alarms == ()
    assert result.device_id == device
    assert await pool.fetchval("SELECT last_seen_at FROM devices WHERE id = $1", device) == T0
    assert await count(pool, "alarms") == 0


async def test_unknown_device_still_raises_and_its_repeat_joins(
    alarm_runtime: Runtime, desk: AlertDesk, pool: asyncpg.Pool
) -> None:
    first = await send(alarm_runtime, desk, sia("DEAD01", 1))
    second = await send(alarm_runtime, desk, sia("DEAD01", 2))
    assert first.device_id is None
    assert first.alarms[0].outcome is Outcome.ALERT_RAISED
    assert second.alarms[0].outcome is Outcome.ALERT_JOINED
    assert second.alarms[0].alert_id == first.alarms[0].alert_id
    context = await pool.fetchval("SELECT context FROM alerts")
    assert context["unknown_device"] == "dc09:DEAD01"


async def test_contact_id_from_the_dialplan_finds_the_device_by_caller(
    alarm_runtime: Runtime, desk: AlertDesk, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        resident, device = await unit(conn, "C1D000", caller="+8613900139000")
    raw = build_contact_id("1234", "101", zone="015")
    result = await ingest_contact_id(
        alarm_runtime, desk, raw, caller="13900139000", received_at=T0, event_id="1795393786.10/1"
    )
    assert result.device_id == device
    assert result.alarms[0].outcome is Outcome.ALERT_RAISED
    again = await ingest_contact_id(
        alarm_runtime, desk, raw, caller="13900139000", received_at=T0, event_id="1795393786.10/1"
    )
    assert again.duplicate
    assert await pool.fetchval("SELECT resident_id FROM alerts") == resident
    with pytest.raises(ContactIdError, match="checksum"):
        await ingest_contact_id(alarm_runtime, desk, raw[:-1] + "9", caller=None, received_at=T0)
