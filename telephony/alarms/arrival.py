"""The first statement of every intake transaction: what arrived, in one round trip for many messages.

For each message of a batch, one statement (`ARRIVE`):
- reserves the ids of its alarms and writes its receipt holding them, so a resend finds
  them; a receipt that already blocks the message makes it a repeat (nothing else is
  written for it, the caller answers it from the receipt);
- marks its device seen (last-seen, battery), every device of the batch locked in id order
  first, so two batches at once cannot deadlock on devices, and later statements of the
  transaction find the rows already held;
- writes the alarm row itself when the message is a single life sign (a periodic test, a
  heartbeat): the bulk of any surge, and nothing else follows from it;
- reads, for a single emergency from a resident's device, the resident's latest alert of that
  kind (open first), which decides whether the press joins, reopens or attaches. Read before
  earlier messages of the batch are handled, it can only be older than they leave it: an alert
  one of them raised is then joined by `raise_alert`'s own conflict rule, so the answer is the
  same as read after them.

Why one statement: under a surge the time a message waits is the time the transaction in
front of it takes, and that is round trips. A message used to cost four statements before
its alarm meant anything; a batch of 64 now costs one, and a test report alone costs one
with no BEGIN and COMMIT around it (a single statement is its own transaction).

The caller guarantees that no two messages of one call share a receipt key (the upsert
cannot touch one row twice): a repeat within a batch goes to a later call.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from dispatch.alerts import OPEN_STATES
from dispatch.database import Conn
from telephony.alarms.kinds import ALERT_KINDS, LIFE_SIGNS, Outcome, Qualifier
from telephony.alarms.messages import HeardDevice, IncomingAlarm, Message

ARRIVE = f"""
WITH m AS MATERIALIZED (
    SELECT * FROM unnest(
        $1::int[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::float8[], $7::bool[],
        $8::text[], $9::text[], $10::text[], $11::int[], $12::int[], $13::bool[],
        $14::text[], $15::text[], $16::bigint[], $17::text[], $18::text[], $19::text[], $20::text[],
        $21::text[], $22::jsonb[], $23::timestamptz[], $24::text[]
    ) AS m(ord, source, key, digest, received_at, window_s, reuse_conflicts,
           dc09, cloud, caller, battery, alarm_count, life,
           sender, payload, integration_id, kind, qualifier, code, zone,
           partition, details, sender_at, alert_kind)
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
    RETURNING d.id, d.resident_id, d.mains_lost_at, d.battery_low_at
),
life AS (
    INSERT INTO alarms (id, source, sender, device_id, resident_id, kind, qualifier, code, zone, partition,
                        payload, details, sender_at, received_at, outcome, integration_id)
    SELECT f.alarm_ids[1], f.source, f.sender, s.id, s.resident_id, f.kind, f.qualifier, f.code, f.zone,
           f.partition, f.payload, f.details, f.sender_at, f.received_at, '{Outcome.LIFE_SIGN.value}',
           f.integration_id
    FROM fresh f LEFT JOIN found USING (ord) LEFT JOIN seen s ON s.id = found.id
    WHERE f.life
),
latest AS (
    SELECT f.ord, a.id, a.state = ANY($25::text[]) AS open, a.closed_at, a.context_id
    FROM fresh f JOIN found USING (ord) JOIN seen s ON s.id = found.id
    CROSS JOIN LATERAL (
        SELECT id, state, closed_at, context_id FROM alerts
        WHERE resident_id = s.resident_id AND kind = f.alert_kind
        ORDER BY (state = ANY($25::text[])) DESC, raised_at DESC LIMIT 1
    ) a
    WHERE f.alert_kind IS NOT NULL
)
SELECT m.ord, f.ord IS NOT NULL AS fresh, f.alarm_ids,
       s.id AS device_id, s.resident_id, s.mains_lost_at, s.battery_low_at,
       f.alert_kind IS NOT NULL AND s.resident_id IS NOT NULL AS latest_known,
       l.id AS latest_id, l.open AS latest_open, l.closed_at AS latest_closed_at,
       l.context_id AS latest_context_id
FROM m LEFT JOIN fresh f USING (ord) LEFT JOIN found USING (ord) LEFT JOIN seen s ON s.id = found.id
     LEFT JOIN latest l USING (ord)
ORDER BY m.ord
"""


@dataclass(frozen=True)
class LatestAlert:
    """The resident's most recent alert of one kind, an open one before any closed one."""

    id: int
    open: bool
    closed_at: dt.datetime | None
    context_id: uuid.UUID | None


@dataclass(frozen=True)
class Arrival:
    """What the statement made of one message."""

    # False: a receipt already blocks it (a repeat, or a reused key); nothing was written for it
    fresh: bool
    # the ids its alarms get, in order (already in its receipt); empty when not fresh
    alarm_ids: tuple[int, ...]
    device: HeardDevice | None
    # its one alarm, a life sign, is already written
    stored: bool
    # its one alarm is an emergency from a resident's device, and `latest` was read for it
    latest_known: bool = False
    latest: LatestAlert | None = None


def is_life_sign(alarms: Sequence[IncomingAlarm]) -> bool:
    """A message that only says "I am alive": the statement writes its alarm and that is all."""
    return len(alarms) == 1 and alarms[0].kind in LIFE_SIGNS


def _alert_kind(alarms: Sequence[IncomingAlarm]) -> str | None:
    """The alert kind a single emergency raises or joins; None for anything else."""
    if len(alarms) != 1 or alarms[0].qualifier is Qualifier.RESTORE:
        return None
    kind = ALERT_KINDS.get(alarms[0].kind)
    return kind.value if kind else None


async def arrive(conn: Conn, messages: Sequence[tuple[Message, Sequence[IncomingAlarm]]]) -> list[Arrival]:
    """Receipts, devices seen and life-sign alarms of `messages` (each with the alarms it will store)."""
    columns: list[list[object]] = [[] for _ in range(24)]
    for ord_, (message, alarms) in enumerate(messages):
        key = message.device
        life = is_life_sign(alarms)
        alarm = alarms[0] if life else None
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
            life,
            message.sender,
            message.payload,
            message.integration_id,
            alarm.kind.value if alarm else None,
            alarm.qualifier.value if alarm else None,
            alarm.code if alarm else None,
            alarm.zone if alarm else None,
            alarm.partition if alarm else None,
            {"description": alarm.description, **alarm.details} if alarm else None,
            alarm.sender_at if alarm else None,
            _alert_kind(alarms),
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    rows = await conn.fetch(ARRIVE, *columns, list(OPEN_STATES))
    arrivals = []
    for row, (_, alarms) in zip(rows, messages, strict=True):
        fresh = bool(row["fresh"])
        device = (
            HeardDevice(row["device_id"], row["resident_id"], row["mains_lost_at"], row["battery_low_at"])
            if row["device_id"] is not None
            else None
        )
        arrivals.append(
            Arrival(
                fresh=fresh,
                alarm_ids=tuple(row["alarm_ids"] or ()) if fresh else (),
                device=device,
                stored=fresh and is_life_sign(alarms),
                latest_known=bool(row["latest_known"]),
                latest=LatestAlert(
                    row["latest_id"], row["latest_open"], row["latest_closed_at"], row["latest_context_id"]
                )
                if row["latest_id"] is not None
                else None,
            )
        )
    return arrivals
