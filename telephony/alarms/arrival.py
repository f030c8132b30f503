"""The statement that stores what arrived: every alarm of many messages, in one round trip.

For each message of a batch, one statement (`ARRIVE`):
- reserves the ids of its alarms and writes its receipt holding them, so a resend finds
  them; a receipt that already blocks the message makes it a repeat (nothing else is
  written for it, the caller answers it from the receipt);
- marks its device seen (last-seen, battery), every device of the batch locked in id order
  first, so two batches at once cannot deadlock on devices;
- writes every one of its alarms: a life sign (a periodic test, a heartbeat) as done, anything
  else as `pending`, to be given its meaning (an alert raised or joined, a note, a notice) by
  the handler right after (handling.py). The sender may be answered as soon as this statement
  returns: a single statement is its own transaction, so the alarm is committed, and a pending
  alarm that the process dies before handling is handled at the next start.

Why one statement: under a surge the time a message waits is the time the work in front of it
takes, and that is round trips. A batch of 64 messages costs one, with no BEGIN and COMMIT.

A batch of one message with at most one alarm, which is what a steady flow is made of, takes
`ARRIVE_ONE`: the same writes with scalar parameters and no joins over arrays. PostgreSQL runs
it in about half the time of `ARRIVE` for one message (0.41 against 0.78 ms here, commit
included), and that time is most of what an ACK waits for. A test holds the two to the same
rows for every kind of message (tests/test_alarm_arrival.py).

The caller guarantees that no two messages of one call share a receipt key (the upsert
cannot touch one row twice): a repeat within a batch goes to a later call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dispatch.database import Conn
from telephony.alarms.kinds import LIFE_SIGNS, Outcome
from telephony.alarms.messages import HeardDevice, IncomingAlarm, Message

ARRIVE = f"""
WITH m AS MATERIALIZED (
    SELECT * FROM unnest(
        $1::int[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::float8[], $7::bool[],
        $8::text[], $9::text[], $10::text[], $11::int[], $12::int[],
        $13::text[], $14::text[], $15::bigint[], $16::text[]
    ) AS m(ord, source, key, digest, received_at, window_s, reuse_conflicts,
           dc09, cloud, caller, battery, alarm_count,
           sender, payload, integration_id, actor)
),
a AS (
    SELECT * FROM unnest(
        $17::int[], $18::int[], $19::text[], $20::text[], $21::text[], $22::text[], $23::text[],
        $24::jsonb[], $25::timestamptz[], $26::bool[]
    ) AS a(ord, n, kind, qualifier, code, zone, partition, details, sender_at, life)
),
ids AS MATERIALIZED (
    SELECT m.ord,
           ARRAY(SELECT nextval('alarms_id_seq') FROM generate_series(1, m.alarm_count)) AS alarm_ids
    FROM m
),
rec AS (
    INSERT INTO alarm_receipts AS r (source, key, digest, received_at, alarm_ids)
    SELECT m.source, m.key, m.digest, m.received_at, ids.alarm_ids FROM m JOIN ids USING (ord)
    WHERE m.key IS NOT NULL
    ON CONFLICT (source, key) DO UPDATE
        SET digest = EXCLUDED.digest, received_at = EXCLUDED.received_at, alarm_ids = EXCLUDED.alarm_ids
        -- a receipt blocks a repeat unless the key now carries another message (where the
        -- sender may reuse keys) or the receipt is older than the sender's window
        WHERE EXISTS (
            SELECT 1 FROM m x WHERE x.source = EXCLUDED.source AND x.key = EXCLUDED.key
              AND ((NOT x.reuse_conflicts AND r.digest <> EXCLUDED.digest)
                   OR (x.window_s IS NOT NULL
                       AND r.received_at < EXCLUDED.received_at - make_interval(secs => x.window_s))))
    RETURNING r.source, r.key
),
fresh AS MATERIALIZED (
    SELECT m.*, ids.alarm_ids FROM m JOIN ids USING (ord)
    WHERE m.key IS NULL OR EXISTS (SELECT 1 FROM rec WHERE rec.source = m.source AND rec.key = m.key)
),
found AS MATERIALIZED (
    SELECT f.ord, d.id FROM fresh f JOIN devices d ON d.dc09_account = f.dc09
    UNION ALL SELECT f.ord, d.id FROM fresh f JOIN devices d ON d.cloud_id = f.cloud
    UNION ALL SELECT f.ord, d.id FROM fresh f JOIN devices d ON d.caller_e164 = f.caller
),
heard AS MATERIALIZED (
    SELECT found.id, max(f.received_at) AS at,
           -- the battery of the last message that reported one, as one message after another would
           (array_agg(f.battery ORDER BY f.ord DESC) FILTER (WHERE f.battery IS NOT NULL))[1] AS battery
    FROM found JOIN fresh f USING (ord) GROUP BY found.id
),
locked AS MATERIALIZED (
    SELECT d.id FROM devices d WHERE d.id IN (SELECT id FROM heard) ORDER BY d.id FOR UPDATE
),
seen AS (
    UPDATE devices d SET last_seen_at = greatest(coalesce(d.last_seen_at, h.at), h.at),
                         battery_percent = coalesce(h.battery, d.battery_percent)
    FROM heard h WHERE d.id = h.id AND d.id IN (SELECT id FROM locked)
    RETURNING d.id, d.resident_id
),
stored AS (
    INSERT INTO alarms (id, source, sender, actor, device_id, resident_id, kind, qualifier, code, zone,
                        partition, payload, details, sender_at, received_at, outcome, integration_id)
    SELECT f.alarm_ids[a.n], f.source, f.sender, f.actor, s.id, s.resident_id, a.kind, a.qualifier, a.code,
           a.zone, a.partition, f.payload, a.details, a.sender_at, f.received_at,
           CASE WHEN a.life THEN '{Outcome.LIFE_SIGN.value}' ELSE '{Outcome.PENDING.value}' END,
           f.integration_id
    FROM a JOIN fresh f USING (ord) LEFT JOIN found USING (ord) LEFT JOIN seen s ON s.id = found.id
)
SELECT m.ord, f.ord IS NOT NULL AS fresh, f.alarm_ids, s.id AS device_id, s.resident_id
FROM m LEFT JOIN fresh f USING (ord) LEFT JOIN found USING (ord) LEFT JOIN seen s ON s.id = found.id
ORDER BY m.ord
"""


# The key a device is found by: its DC-09 account, its cloud id or its calling number.
_DEVICE_COLUMNS = ("dc09_account", "cloud_id", "caller_e164")


def _arrive_one(column: str) -> str:
    return f"""
WITH ids AS MATERIALIZED (
    SELECT CASE WHEN $9 THEN ARRAY[nextval('alarms_id_seq')] ELSE '{{}}'::bigint[] END AS alarm_ids
),
rec AS (
    INSERT INTO alarm_receipts AS r (source, key, digest, received_at, alarm_ids)
    SELECT $1, $2::text, $3, $4, ids.alarm_ids FROM ids WHERE $2::text IS NOT NULL
    ON CONFLICT (source, key) DO UPDATE
        SET digest = EXCLUDED.digest, received_at = EXCLUDED.received_at, alarm_ids = EXCLUDED.alarm_ids
        -- as in ARRIVE: a reused key with other content where keys may be reused, or a stale receipt
        WHERE (NOT $6 AND r.digest <> EXCLUDED.digest)
           OR ($5::float8 IS NOT NULL AND r.received_at < EXCLUDED.received_at - make_interval(secs => $5))
    RETURNING 1
),
fresh AS MATERIALIZED (
    SELECT ids.alarm_ids FROM ids WHERE $2::text IS NULL OR EXISTS (SELECT 1 FROM rec)
),
seen AS (
    UPDATE devices d SET last_seen_at = greatest(coalesce(d.last_seen_at, $4), $4),
                         battery_percent = coalesce($8, d.battery_percent)
    WHERE d.{column} = $7 AND EXISTS (SELECT 1 FROM fresh)
    RETURNING d.id, d.resident_id
),
stored AS (
    INSERT INTO alarms (id, source, sender, actor, device_id, resident_id, kind, qualifier, code, zone,
                        partition, payload, details, sender_at, received_at, outcome, integration_id)
    SELECT f.alarm_ids[1], $1, $10, $13, s.id, s.resident_id, $14, $15, $16, $17, $18, $11, $19, $20, $4,
           CASE WHEN $21 THEN '{Outcome.LIFE_SIGN.value}' ELSE '{Outcome.PENDING.value}' END, $12
    FROM fresh f LEFT JOIN seen s ON true
    WHERE $9
)
SELECT f.alarm_ids IS NOT NULL AS fresh, f.alarm_ids, s.id AS device_id, s.resident_id
FROM (SELECT) one LEFT JOIN fresh f ON true LEFT JOIN seen s ON true
"""


ARRIVE_ONE = {column: _arrive_one(column) for column in _DEVICE_COLUMNS}


@dataclass(frozen=True)
class Arrival:
    """What the statement made of one message."""

    # False: a receipt already blocks it (a repeat, or a reused key); nothing was written for it
    fresh: bool
    # the ids of its alarms, in order, each stored (life signs done, the rest pending); empty when not fresh
    alarm_ids: tuple[int, ...]
    device: HeardDevice | None


def is_life_sign(alarm: IncomingAlarm) -> bool:
    """An alarm that only says "I am alive": stored and that is all, nothing to handle."""
    return alarm.kind in LIFE_SIGNS


async def arrive(conn: Conn, messages: Sequence[tuple[Message, Sequence[IncomingAlarm]]]) -> list[Arrival]:
    """Receipts, devices seen and every alarm of `messages` (each with the alarms it stores)."""
    if len(messages) == 1 and len(messages[0][1]) <= 1:
        return [await _arrive_one_message(conn, *messages[0])]
    return await arrive_together(conn, messages)


async def _arrive_one_message(conn: Conn, message: Message, alarms: Sequence[IncomingAlarm]) -> Arrival:
    key = message.device
    # at most one of the three is set; none: a device nobody can find (the column is then moot)
    column, value = next(
        (
            (c, v)
            for c, v in zip(_DEVICE_COLUMNS, (key.dc09_account, key.cloud_id, key.caller_e164), strict=True)
            if v
        ),
        (_DEVICE_COLUMNS[0], None),
    )
    alarm = alarms[0] if alarms else None
    row = await conn.fetchrow(
        ARRIVE_ONE[column],
        message.source.value,
        message.receipt_key,
        message.digest,
        message.received_at,
        message.duplicate_window_seconds,
        message.reused_key_is_conflict,
        value,
        message.battery_percent,
        alarm is not None,
        message.sender,
        message.payload,
        message.integration_id,
        message.actor,
        alarm.kind.value if alarm else None,
        alarm.qualifier.value if alarm else None,
        alarm.code if alarm else None,
        alarm.zone if alarm else None,
        alarm.partition if alarm else None,
        {"description": alarm.description, **alarm.details} if alarm else None,
        alarm.sender_at if alarm else None,
        alarm is not None and is_life_sign(alarm),
    )
    assert row is not None  # the statement always answers one row
    return Arrival(
        fresh=bool(row["fresh"]),
        alarm_ids=tuple(row["alarm_ids"]) if row["fresh"] else (),
        device=HeardDevice(row["device_id"], row["resident_id"]) if row["device_id"] is not None else None,
    )


async def arrive_together(
    conn: Conn, messages: Sequence[tuple[Message, Sequence[IncomingAlarm]]]
) -> list[Arrival]:
    """`arrive` for any number of messages, in one `ARRIVE`."""
    columns: list[list[object]] = [[] for _ in range(16)]
    alarm_columns: list[list[object]] = [[] for _ in range(10)]
    for ord_, (message, alarms) in enumerate(messages):
        key = message.device
        values: tuple[object, ...] = (
            ord_,
            message.source.value,
            message.receipt_key,
            message.digest,
            message.received_at,
            message.duplicate_window_seconds,
            message.reused_key_is_conflict,
            key.dc09_account or None,
            key.cloud_id or None,
            key.caller_e164 or None,
            message.battery_percent,
            len(alarms),
            message.sender,
            message.payload,
            message.integration_id,
            message.actor,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
        for n, alarm in enumerate(alarms, start=1):
            alarm_values: tuple[object, ...] = (
                ord_,
                n,
                alarm.kind.value,
                alarm.qualifier.value,
                alarm.code,
                alarm.zone,
                alarm.partition,
                {"description": alarm.description, **alarm.details},
                alarm.sender_at,
                is_life_sign(alarm),
            )
            for column, value in zip(alarm_columns, alarm_values, strict=True):
                column.append(value)
    rows = await conn.fetch(ARRIVE, *columns, *alarm_columns)
    return [
        Arrival(
            fresh=bool(row["fresh"]),
            alarm_ids=tuple(row["alarm_ids"] or ()) if row["fresh"] else (),
            device=HeardDevice(row["device_id"], row["resident_id"])
            if row["device_id"] is not None
            else None,
        )
        for row in rows
    ]
