"""The two arrival statements store the same rows: `ARRIVE_ONE` (one message, at most one alarm:
the common case, at half the cost) and `ARRIVE` (any batch). The same messages, one after the
other, are played through each on a real PostgreSQL, and what each answered and left in the
database is compared: receipts, repeats, reused keys, stale receipts, each way of finding a
device, an unknown device, a supervision message with no alarm, battery levels."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from dispatch.database import Conn
from telephony.alarms.arrival import Arrival, arrive, arrive_together
from telephony.alarms.kinds import AlarmKind, AlarmSource, Qualifier
from telephony.alarms.messages import DeviceKey, IncomingAlarm, Message
from tests.alarm_helpers import unit

T0 = dt.datetime(2026, 12, 7, 2, 0, tzinfo=dt.UTC)

Arrive = Callable[[Conn, Sequence[tuple[Message, Sequence[IncomingAlarm]]]], Awaitable[list[Arrival]]]


def message(
    minute: float,
    device: DeviceKey,
    *,
    source: AlarmSource = AlarmSource.DC09,
    key: str | None = None,
    digest: str = "d",
    kind: AlarmKind | None = AlarmKind.TEST,
    window: float | None = 3600.0,
    reuse_conflicts: bool = False,
    battery: int | None = None,
) -> Message:
    at = T0 + dt.timedelta(minutes=minute)
    alarms = (
        ()
        if kind is None
        else (
            IncomingAlarm(
                kind,
                Qualifier.NEW,
                kind.value.upper(),
                zone="001",
                partition="1",
                description=f"{kind.value} at {minute}",
                details={"location": {"lat": 40.85, "lon": 111.7}},
                sender_at=at - dt.timedelta(seconds=2),
            ),
        )
    )
    return Message(
        source=source,
        sender=f"{source.value}:{device.dc09_account or device.cloud_id or device.caller_e164 or '?'}",
        actor=f"{source.value}:test",
        device=device,
        payload=f"payload {minute}",
        alarms=alarms,
        received_at=at,
        receipt_key=key,
        digest=digest,
        duplicate_window_seconds=window,
        reused_key_is_conflict=reuse_conflicts,
        battery_percent=battery,
    )


UNIT = DeviceKey(dc09_account="A10001")
CLOUD = DeviceKey(cloud_id="cloud-7")
LINE = DeviceKey(caller_e164="+8613900139000")
STRANGER = DeviceKey(dc09_account="DEAD01")

MESSAGES = [
    message(0, UNIT, key="A10001/1/1/0001"),
    message(1, UNIT, key="A10001/1/1/0001"),  # a resend after a lost ACK: a repeat
    message(2, UNIT, key="A10001/1/1/0001", digest="other"),  # the sequence wrapped: a new message
    message(
        3,
        CLOUD,
        source=AlarmSource.HTTP,
        key="1/evt-1",
        kind=AlarmKind.SOS,
        window=None,
        reuse_conflicts=True,
        battery=50,
    ),
    message(
        4, CLOUD, source=AlarmSource.HTTP, key="1/evt-1", digest="other", window=None, reuse_conflicts=True
    ),  # an event id reused for another alarm: refused
    message(5, LINE, source=AlarmSource.CONTACT_ID, key="ami:x", kind=AlarmKind.FALL),
    message(6, STRANGER, key="DEAD01/1/1/0001", kind=AlarmKind.SOS),
    message(7, UNIT, key=None, kind=None),  # link supervision: the unit is seen, nothing stored
    message(70, UNIT, key="A10001/1/1/0001"),  # past the window: the old receipt no longer blocks
    message(
        71,
        CLOUD,
        source=AlarmSource.HTTP,
        key="1/evt-2",
        kind=None,
        window=None,
        reuse_conflicts=True,
        battery=40,
    ),
    message(72, CLOUD, source=AlarmSource.HTTP, key="1/evt-1", window=None, reuse_conflicts=True),
]


async def play(conn: Conn, through: Arrive) -> tuple[list[tuple[Any, ...]], dict[str, list[tuple[Any, ...]]]]:
    """Every message alone through `through`; what it answered, and the rows left."""
    await conn.execute("TRUNCATE alarms, alarm_receipts")
    await conn.execute("UPDATE devices SET last_seen_at = NULL, battery_percent = NULL")
    answers = []
    for m in MESSAGES:
        [arrival] = await through(conn, [(m, m.alarms)])
        answers.append((arrival.fresh, len(arrival.alarm_ids), arrival.device))
    alarms = await conn.fetch(
        """SELECT source, sender, actor, device_id, resident_id, kind, qualifier, code, zone, partition,
                  payload, details, sender_at, received_at, outcome, integration_id, alert_id, handled_at
           FROM alarms ORDER BY id"""
    )
    receipts = await conn.fetch(
        """SELECT r.source, r.key, r.digest, r.received_at, array_agg(a.received_at ORDER BY a.id) AS alarms
           FROM alarm_receipts r LEFT JOIN alarms a ON a.id = ANY(r.alarm_ids)
           GROUP BY r.source, r.key, r.digest, r.received_at ORDER BY r.key"""
    )
    devices = await conn.fetch("SELECT id, last_seen_at, battery_percent FROM devices ORDER BY id")
    return answers, {
        "alarms": [tuple(r) for r in alarms],
        "receipts": [tuple(r) for r in receipts],
        "devices": [tuple(r) for r in devices],
    }


async def test_one_message_is_stored_as_a_batch_would_store_it(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await unit(conn, "A10001")
        await unit(conn, "A10002", cloud_id="cloud-7")
        await unit(conn, "A10003", caller="+8613900139000")
        # `arrive` takes the one-message statement for each of these (one message, at most one alarm)
        assert all(len(m.alarms) <= 1 for m in MESSAGES)
        alone, alone_rows = await play(conn, arrive)
        together, together_rows = await play(conn, arrive_together)
    assert alone == together
    assert alone_rows == together_rows
    # and what they agree on is what intake means
    assert [(fresh, count) for fresh, count, _ in alone] == [
        (True, 1),
        (False, 0),
        (True, 1),
        (True, 1),
        (False, 0),
        (True, 1),
        (True, 1),
        (True, 0),
        (True, 1),
        (True, 0),
        (False, 0),
    ]
    assert [device is None for _, _, device in alone] == [
        False,
        True,
        False,
        False,
        True,
        False,
        True,
        False,
        False,
        False,
        True,
    ]
    outcomes = [(row[5], row[14]) for row in alone_rows["alarms"]]
    assert outcomes == [
        ("test", "life_sign"),
        ("test", "life_sign"),
        ("sos", "pending"),
        ("fall", "pending"),
        ("sos", "pending"),
        ("test", "life_sign"),
    ]
    devices = {row[0]: row[1:] for row in alone_rows["devices"]}
    assert sorted(devices.values(), key=str) == sorted(
        [
            (T0 + dt.timedelta(minutes=70), None),
            (T0 + dt.timedelta(minutes=71), 40),
            (T0 + dt.timedelta(minutes=5), None),
        ],
        key=str,
    )
