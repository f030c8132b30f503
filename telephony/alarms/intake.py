"""One message from a device becomes committed rows before anyone answers the sender.

`record_message` runs in the caller's transaction: the receipt (so a resend stores
nothing new, even after a restart), the device's last-seen and battery, one
`alarms` row per alarm, and what each alarm means — an alert raised or joined
through `AlertDesk.raise_alert`, a timeline note (restore, cancel, a press just
after the alert closed), or a maintenance notice. `take` runs it in a transaction
with a time limit and publishes the events after the commit; only then may an
adapter send its ACK / 202. Under load the transaction is shared (group commit):
messages that arrive while WRITERS transactions are being written wait and go
together, one commit for many; a message that fails such a transaction is retried alone.

Decisions:
- A repeat while an alert is open joins it (`raise_alert` counts `triggers`). A
  press within `alarms.rejoin_window_seconds` after the resident's alert of that
  kind was closed is attached to the closed alert (a note) with a critical
  call-back notice, instead of a second alert an operator would close again.
- A restore is a note on the alert it answers. A cancel from the device is a
  note asking for a call-back and a notice; it never cancels an alert: only an
  operator closes one.
- Low battery, mains loss and other faults update the device and raise one
  maintenance notice while one is open for that device and fault; tamper is an
  alert (kind tamper). Each fault and tamper of a known device also asks for a
  repair (dispatch/repairs.py: one open repair order per device, repeats join it).
- An alarm from a device nobody registered is still stored, and an emergency
  from it still raises an alert (or joins the open one fed by the same sender).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Histogram

from dispatch.alert_desk import Actor, AlertDesk
from dispatch.alerts import OPEN_STATES, AlertKind, AlertSource, note
from dispatch.config import AlarmsConfig
from dispatch.database import Conn
from dispatch.events import DomainEvent
from dispatch.notices import Severity, raise_notice
from dispatch.repairs import request_repair
from dispatch.runtime import Runtime
from telephony.alarms.kinds import (
    ALERT_KINDS,
    MAINTENANCE_KINDS,
    AlarmKind,
    AlarmSource,
    Outcome,
    Qualifier,
)

log = logging.getLogger(__name__)

# Errors that mean "the database is not there right now": the sender gets no ACK and retries.
DATABASE_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, TimeoutError)


class ReceiptConflict(Exception):
    """The sender reused an idempotency key for a different message."""


@dataclass(frozen=True)
class DeviceKey:
    """How the message names its device; at most one is set."""

    dc09_account: str | None = None
    cloud_id: str | None = None
    caller_e164: str | None = None


@dataclass(frozen=True)
class IncomingAlarm:
    kind: AlarmKind
    qualifier: Qualifier
    code: str
    zone: str | None = None
    partition: str | None = None
    description: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    sender_at: dt.datetime | None = None


@dataclass(frozen=True)
class Message:
    """What one sender delivered at once (a DC-09 frame, an event file, one POST)."""

    source: AlarmSource
    sender: str
    actor: str
    device: DeviceKey
    payload: str
    alarms: tuple[IncomingAlarm, ...]
    received_at: dt.datetime
    # None: no receipt (a supervision message stores nothing to repeat)
    receipt_key: str | None = None
    digest: str = ""
    # how long a receipt blocks a repeat; None: forever
    duplicate_window_seconds: float | None = None
    # a reused key with other content: a conflict (HTTP), or a new message (DC-09 wrap)
    reused_key_is_conflict: bool = False
    battery_percent: int | None = None
    integration_id: int | None = None


@dataclass(frozen=True)
class AlarmResult:
    alarm_id: int
    kind: AlarmKind
    outcome: Outcome
    alert_id: int | None


@dataclass(frozen=True)
class IntakeResult:
    duplicate: bool
    device_id: int | None
    alarms: tuple[AlarmResult, ...]
    events: tuple[DomainEvent, ...] = field(default=(), repr=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "duplicate": self.duplicate,
            "device_id": self.device_id,
            "alarms": [
                {"id": a.alarm_id, "kind": a.kind.value, "outcome": a.outcome.value, "alert_id": a.alert_id}
                for a in self.alarms
            ],
        }


@dataclass(frozen=True)
class _Device:
    id: int
    resident_id: int | None
    mains_lost_at: dt.datetime | None
    battery_low_at: dt.datetime | None


UPSERT_RECEIPT = """
INSERT INTO alarm_receipts AS r (source, key, digest, received_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (source, key) DO UPDATE
    SET digest = EXCLUDED.digest, received_at = EXCLUDED.received_at, alarm_ids = '{}'
    WHERE (NOT $6 AND r.digest <> EXCLUDED.digest)
       OR ($5::float8 IS NOT NULL AND r.received_at < EXCLUDED.received_at - make_interval(secs => $5))
RETURNING 1
"""

# The device is found and marked seen in one statement; the row lock it takes orders
# concurrent alarms of one device, so repeats join one alert instead of racing.
SEEN = """
UPDATE devices SET last_seen_at = greatest(coalesce(last_seen_at, $2), $2),
                   battery_percent = coalesce($3, battery_percent)
WHERE {column} = $1
RETURNING id, resident_id, mains_lost_at, battery_low_at
"""

INSERT_ALARM = """
INSERT INTO alarms (source, sender, device_id, resident_id, kind, qualifier, code, zone, partition, payload,
                    details, sender_at, received_at, outcome, alert_id, notice_id, integration_id, context_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
RETURNING id
"""


async def _receipt(conn: Conn, message: Message) -> tuple[int, ...] | None:
    """None when this message is new; the alarm ids it stored before when it is a repeat."""
    assert message.receipt_key is not None
    fresh = await conn.fetchval(
        UPSERT_RECEIPT,
        message.source.value,
        message.receipt_key,
        message.digest,
        message.received_at,
        message.duplicate_window_seconds,
        message.reused_key_is_conflict,
    )
    if fresh is not None:
        return None
    row = await conn.fetchrow(
        "SELECT digest, alarm_ids FROM alarm_receipts WHERE source = $1 AND key = $2",
        message.source.value,
        message.receipt_key,
    )
    assert row is not None
    if row["digest"] != message.digest:
        raise ReceiptConflict(f"{message.receipt_key} was already used for another message")
    return tuple(row["alarm_ids"])


async def _seen(conn: Conn, message: Message) -> _Device | None:
    key = message.device
    column, value = (
        ("dc09_account", key.dc09_account)
        if key.dc09_account
        else ("cloud_id", key.cloud_id)
        if key.cloud_id
        else ("caller_e164", key.caller_e164)
    )
    if not value:
        return None
    row = await conn.fetchrow(SEEN.format(column=column), value, message.received_at, message.battery_percent)
    return _Device(**dict(row.items())) if row else None


async def _repeat(conn: Conn, alarm_ids: tuple[int, ...]) -> IntakeResult:
    rows = await conn.fetch(
        "SELECT id, kind, outcome, alert_id, device_id FROM alarms WHERE id = ANY($1::bigint[]) ORDER BY id",
        list(alarm_ids),
    )
    return IntakeResult(
        duplicate=True,
        device_id=rows[0]["device_id"] if rows else None,
        alarms=tuple(
            AlarmResult(r["id"], AlarmKind(r["kind"]), Outcome(r["outcome"]), r["alert_id"]) for r in rows
        ),
    )


async def record_message(
    conn: Conn, desk: AlertDesk, settings: AlarmsConfig, message: Message
) -> IntakeResult:
    """Everything the message means, in the caller's transaction; publish `events` after its commit."""
    if message.receipt_key is not None:
        before = await _receipt(conn, message)
        if before is not None:
            return await _repeat(conn, before)
    device = await _seen(conn, message)
    events: list[DomainEvent] = []
    results: list[AlarmResult] = []
    battery_low = (
        message.battery_percent is not None and message.battery_percent <= settings.battery_low_percent
    )
    alarms = list(message.alarms)
    if battery_low and not any(a.kind is AlarmKind.LOW_BATTERY for a in alarms):
        # A cloud reporting a low level alongside anything else is a low-battery report too.
        alarms.append(
            IncomingAlarm(
                AlarmKind.LOW_BATTERY,
                Qualifier.NEW,
                "battery",
                description=f"battery {message.battery_percent}%",
                sender_at=alarms[0].sender_at if alarms else None,
            )
        )
    for alarm in alarms:
        handled = await _handle(conn, desk, settings, message, device, alarm)
        events.extend(handled.events)
        alarm_id = await conn.fetchval(
            INSERT_ALARM,
            message.source.value,
            message.sender,
            device.id if device else None,
            device.resident_id if device else None,
            alarm.kind.value,
            alarm.qualifier.value,
            alarm.code,
            alarm.zone,
            alarm.partition,
            message.payload,
            {"description": alarm.description, **alarm.details},
            alarm.sender_at,
            message.received_at,
            handled.outcome.value,
            handled.alert_id,
            handled.notice_id,
            message.integration_id,
            handled.context_id,
        )
        results.append(AlarmResult(int(alarm_id), alarm.kind, handled.outcome, handled.alert_id))
    if message.receipt_key is not None:
        await conn.execute(
            "UPDATE alarm_receipts SET alarm_ids = $3 WHERE source = $1 AND key = $2",
            message.source.value,
            message.receipt_key,
            [r.alarm_id for r in results],
        )
    return IntakeResult(
        duplicate=False, device_id=device.id if device else None, alarms=tuple(results), events=tuple(events)
    )


@dataclass
class _Handled:
    outcome: Outcome
    alert_id: int | None = None
    notice_id: int | None = None
    context_id: Any = None
    events: list[DomainEvent] = field(default_factory=list)


def _context(message: Message, alarm: IncomingAlarm) -> dict[str, Any]:
    context: dict[str, Any] = {"alarm": alarm.kind.value, "code": alarm.code, "via": message.source.value}
    if alarm.zone:
        context["zone"] = alarm.zone
    if alarm.description:
        context["description"] = alarm.description
    if "location" in alarm.details:
        context["location"] = alarm.details["location"]
    return context


async def _handle(
    conn: Conn,
    desk: AlertDesk,
    settings: AlarmsConfig,
    message: Message,
    device: _Device | None,
    alarm: IncomingAlarm,
) -> _Handled:
    now = message.received_at
    alert_kind = ALERT_KINDS.get(alarm.kind)
    if alert_kind is not None and alarm.qualifier is not Qualifier.RESTORE:
        if alarm.kind is AlarmKind.TAMPER and alarm.qualifier is Qualifier.NEW and device is not None:
            # a unit pulled off the wall is an alert now and a repair job after it (refitted)
            await request_repair(conn, device.id, alarm.kind.value, now)
        return await _emergency(conn, desk, settings, message, device, alarm, alert_kind)
    if alert_kind is not None:
        return await _attach(conn, settings, message, device, alarm, alert_kind, "alarm.restored")
    if alarm.kind is AlarmKind.CANCEL:
        return await _cancel(conn, message, device, alarm)
    if alarm.kind in MAINTENANCE_KINDS:
        return await _maintenance(conn, message, device, alarm, now)
    return _Handled(Outcome.LIFE_SIGN)


async def _latest_alert(
    conn: Conn, device: _Device | None, sender: str, kind: AlertKind | None
) -> tuple[int, bool, dt.datetime | None, Any] | None:
    """(id, open, closed_at, context id) of the most recent alert this alarm belongs with."""
    if device is not None and device.resident_id is not None:
        row = await conn.fetchrow(
            """SELECT id, state = ANY($3::text[]) AS open, closed_at, context_id FROM alerts
               WHERE resident_id = $1 AND ($2::text IS NULL OR kind = $2)
               ORDER BY (state = ANY($3::text[])) DESC, raised_at DESC LIMIT 1""",
            device.resident_id,
            kind.value if kind else None,
            list(OPEN_STATES),
        )
    elif device is not None:
        row = await conn.fetchrow(
            """SELECT id, state = ANY($3::text[]) AS open, closed_at, context_id FROM alerts
               WHERE device_id = $1 AND resident_id IS NULL AND ($2::text IS NULL OR kind = $2)
               ORDER BY (state = ANY($3::text[])) DESC, raised_at DESC LIMIT 1""",
            device.id,
            kind.value if kind else None,
            list(OPEN_STATES),
        )
    else:
        # Nobody registered this device: group by who sent it, through the alarms it sent before.
        row = await conn.fetchrow(
            """SELECT a.id, a.state = ANY($3::text[]) AS open, a.closed_at, a.context_id
               FROM alarms al JOIN alerts a ON a.id = al.alert_id
               WHERE al.sender = $1 AND ($2::text IS NULL OR a.kind = $2)
               ORDER BY (a.state = ANY($3::text[])) DESC, al.id DESC LIMIT 1""",
            sender,
            kind.value if kind else None,
            list(OPEN_STATES),
        )
    if row is None:
        return None
    return int(row["id"]), bool(row["open"]), row["closed_at"], row["context_id"]


async def _emergency(
    conn: Conn,
    desk: AlertDesk,
    settings: AlarmsConfig,
    message: Message,
    device: _Device | None,
    alarm: IncomingAlarm,
    alert_kind: AlertKind,
) -> _Handled:
    now = message.received_at
    latest = await _latest_alert(conn, device, message.sender, alert_kind)
    if latest is not None:
        alert_id, is_open, closed_at, context_id = latest
        window = dt.timedelta(seconds=settings.rejoin_window_seconds)
        if not is_open and closed_at is not None and now - closed_at <= window:
            return await _after_close(conn, message, alarm, alert_id, context_id, now - closed_at)
        if is_open and device is None:
            # raise_alert cannot join an alert of an unknown device: note the repeat on it instead.
            event = await note(
                conn,
                alert_id,
                kind="alarm.repeated",
                actor=message.actor,
                at=now,
                data=_context(message, alarm),
            )
            return _Handled(Outcome.ALERT_JOINED, alert_id, context_id=context_id, events=[event])
    raised = await desk.raise_alert(
        conn,
        source=AlertSource.ALARM,
        kind=alert_kind,
        resident_id=device.resident_id if device else None,
        device_id=device.id if device else None,
        context={**_context(message, alarm), **({} if device else {"unknown_device": message.sender})},
        actor=Actor(message.actor),
        at=now,
    )
    outcome = Outcome.ALERT_RAISED if raised.created else Outcome.ALERT_JOINED
    return _Handled(outcome, raised.alert.id, context_id=raised.alert.context_id, events=list(raised.events))


async def _after_close(
    conn: Conn,
    message: Message,
    alarm: IncomingAlarm,
    alert_id: int,
    context_id: Any,
    since_close: dt.timedelta,
) -> _Handled:
    now = message.received_at
    seconds = int(since_close.total_seconds())
    event = await note(
        conn,
        alert_id,
        kind="alarm.after_close",
        actor=message.actor,
        at=now,
        reason=f"pressed again {seconds} s after the alert was closed",
        data=_context(message, alarm),
    )
    notice = await raise_notice(
        conn,
        kind="alarm.call_back",
        severity=Severity.CRITICAL,
        text=(
            f"警情 {alert_id} 关闭 {seconds} 秒后设备再次报警，请立即回拨确认。"
            f" / Alert {alert_id}: the device alarmed again {seconds} s after it was closed; call back now."
        ),
        subject_type="alert",
        subject_id=alert_id,
        context_id=context_id,
        data={"alarm": alarm.kind.value},
        at=now,
    )
    return _Handled(
        Outcome.ATTACHED_TO_CLOSED, alert_id, notice.subject_id, context_id, events=[event, notice]
    )


async def _attach(
    conn: Conn,
    settings: AlarmsConfig,
    message: Message,
    device: _Device | None,
    alarm: IncomingAlarm,
    alert_kind: AlertKind | None,
    note_kind: str,
) -> _Handled:
    """A restore: a note on the open alert it answers, or the one closed just before."""
    now = message.received_at
    latest = await _latest_alert(conn, device, message.sender, alert_kind)
    if latest is None:
        return _Handled(Outcome.NOTHING_OPEN)
    alert_id, is_open, closed_at, context_id = latest
    recent = closed_at is not None and now - closed_at <= dt.timedelta(seconds=settings.rejoin_window_seconds)
    if not (is_open or recent):
        return _Handled(Outcome.NOTHING_OPEN)
    event = await note(
        conn, alert_id, kind=note_kind, actor=message.actor, at=now, data=_context(message, alarm)
    )
    return _Handled(Outcome.RESTORE_NOTED, alert_id, context_id=context_id, events=[event])


async def _cancel(conn: Conn, message: Message, device: _Device | None, alarm: IncomingAlarm) -> _Handled:
    """The resident pressed cancel: ask for a call-back; only an operator closes the alert."""
    now = message.received_at
    latest = await _latest_alert(conn, device, message.sender, None)
    if latest is None or not latest[1]:
        return _Handled(Outcome.NOTHING_OPEN)
    alert_id, _, _, context_id = latest
    event = await note(
        conn,
        alert_id,
        kind="alarm.cancel_requested",
        actor=message.actor,
        at=now,
        reason="cancelled at the device: call back before closing",
        data={**_context(message, alarm), "call_back": True},
    )
    notice = await raise_notice(
        conn,
        kind="alarm.cancel_requested",
        severity=Severity.WARNING,
        text=(
            f"警情 {alert_id}：老人在设备上按了取消，请回拨确认后再关闭。"
            f" / Alert {alert_id}: cancelled at the device; call back before closing it."
        ),
        subject_type="alert",
        subject_id=alert_id,
        context_id=context_id,
        at=now,
    )
    return _Handled(Outcome.CANCEL_NOTED, alert_id, notice.subject_id, context_id, events=[event, notice])


_FAULT_COLUMN = {AlarmKind.MAINS_LOSS: "mains_lost_at", AlarmKind.LOW_BATTERY: "battery_low_at"}
_FAULT_ZH = {
    AlarmKind.MAINS_LOSS: "市电断电",
    AlarmKind.LOW_BATTERY: "电池电量低",
    AlarmKind.TROUBLE: "设备故障",
}


async def _maintenance(
    conn: Conn, message: Message, device: _Device | None, alarm: IncomingAlarm, now: dt.datetime
) -> _Handled:
    """A technical fault: the device row records it, and one notice per open fault reaches the floor."""
    column = _FAULT_COLUMN.get(alarm.kind)
    if alarm.qualifier is Qualifier.RESTORE:
        if device is not None and column is not None:
            await conn.execute(f"UPDATE devices SET {column} = NULL WHERE id = $1", device.id)
        return _Handled(Outcome.DEVICE_UPDATED)
    if device is not None and column is not None:
        await conn.execute(
            f"UPDATE devices SET {column} = coalesce({column}, $2) WHERE id = $1", device.id, now
        )
    kind = f"device.{alarm.kind.value}"
    subject_type, subject_id = ("device", device.id) if device else (None, None)
    already = await conn.fetchval(
        """SELECT id FROM notices WHERE kind = $1 AND acknowledged_at IS NULL
           AND subject_type IS NOT DISTINCT FROM $2 AND subject_id IS NOT DISTINCT FROM $3
           AND ($2::text IS NOT NULL OR data->>'sender' = $4) LIMIT 1""",
        kind,
        subject_type,
        subject_id,
        message.sender,
    )
    if device is not None:
        # a repeat joins the device's open repair order, or opens one when the last is done
        await request_repair(conn, device.id, alarm.kind.value, now)
    if already is not None:
        return _Handled(Outcome.DEVICE_UPDATED, notice_id=int(already))
    what = _FAULT_ZH[alarm.kind]
    label = f"设备 {device.id}" if device else "未登记设备"
    notice = await raise_notice(
        conn,
        kind=kind,
        severity=Severity.WARNING,
        text=f"{label}：{what}，请安排维护。 / Device {device.id if device else '?'}: {alarm.kind.value}, "
        "maintenance needed.",
        subject_type=subject_type,
        subject_id=subject_id,
        data={"sender": message.sender, "code": alarm.code, "audience": "maintenance"},
        at=now,
    )
    return _Handled(Outcome.MAINTENANCE, notice_id=notice.subject_id, events=[notice])


# -- the transaction around it -------------------------------------------------------------


class IntakeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.alarms = Counter(
            "careline_alarms", "Alarms stored", ["source", "kind", "outcome"], registry=registry
        )
        self.duplicates = Counter(
            "careline_alarm_duplicates",
            "Repeated messages answered without storing",
            ["source"],
            registry=registry,
        )
        self.failures = Counter(
            "careline_alarm_intake_failures",
            "Messages not stored (left unanswered)",
            ["source"],
            registry=registry,
        )
        self.seconds = Histogram(
            "careline_alarm_intake_seconds",
            "From receipt to commit of one message",
            ["source"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )


_metrics: weakref.WeakKeyDictionary[CollectorRegistry, IntakeMetrics] = weakref.WeakKeyDictionary()


def metrics_for(registry: CollectorRegistry) -> IntakeMetrics:
    """One set of collectors per registry, however many adapters feed it."""
    found = _metrics.get(registry)
    if found is None:
        found = _metrics[registry] = IntakeMetrics(registry)
    return found


# Group commit: messages that arrive while others are being written wait and go together, up to
# BATCH_MAX in one transaction (one commit, one fsync), in at most WRITERS transactions at once.
BATCH_MAX = 64
WRITERS = 4


def _device_order(message: Message) -> str:
    """Batches take device rows in one order, so two batches at once cannot deadlock on them."""
    key = message.device
    return key.dc09_account or key.cloud_id or key.caller_e164 or ""


class _GroupCommit:
    """One desk's intake writers. A writer task exists only while messages wait; each is held here
    and ends when the queue is empty, and every message's outcome reaches its caller's future."""

    def __init__(self, runtime: Runtime, desk: AlertDesk) -> None:
        self.runtime = runtime
        self.desk = desk
        self.queue: list[tuple[Message, asyncio.Future[IntakeResult]]] = []
        self.writers: set[asyncio.Task[None]] = set()

    async def take(self, message: Message) -> IntakeResult:
        future: asyncio.Future[IntakeResult] = asyncio.get_running_loop().create_future()
        self.queue.append((message, future))
        if len(self.writers) < WRITERS:
            writer = asyncio.create_task(self._write(), name="alarm-intake")
            self.writers.add(writer)
            writer.add_done_callback(self.writers.discard)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # A caller that gives up (its sender went away) leaves its message to be committed anyway:
            # the sender had no ACK and resends, and the receipt makes the resend a duplicate.
            future.add_done_callback(_retrieve)
            raise

    async def _write(self) -> None:
        while self.queue:
            batch, self.queue = self.queue[:BATCH_MAX], self.queue[BATCH_MAX:]
            try:
                await self._commit(batch)
            except BaseException:
                # cancelled (the loop is closing): nothing of this batch was acknowledged
                for _, future in batch:
                    future.cancel()
                raise

    async def _commit(self, batch: list[tuple[Message, asyncio.Future[IntakeResult]]]) -> None:
        settings = self.runtime.config.alarms
        if len(batch) > 1:
            batch.sort(key=lambda entry: _device_order(entry[0]))
            results: list[IntakeResult | ReceiptConflict] = []
            try:
                async with asyncio.timeout(settings.intake_timeout_seconds):
                    async with self.runtime.pool.acquire() as conn, conn.transaction():
                        for message, _ in batch:
                            try:
                                results.append(await record_message(conn, self.desk, settings, message))
                            except ReceiptConflict as conflict:
                                # raised before the message wrote anything: the others carry on
                                results.append(conflict)
            except DATABASE_DOWN as exc:
                for _, future in batch:
                    future.set_exception(exc)
                return
            except Exception as exc:
                # One message failed the transaction (a deadlock, a bug): each alone, as without batching.
                # The error's type only: its text may quote a message's fields.
                log.warning(
                    "a batch of %d alarms failed its shared transaction (%s); committing each alone",
                    len(batch),
                    type(exc).__name__,
                )
            else:
                for (_, future), result in zip(batch, results, strict=True):
                    if isinstance(result, ReceiptConflict):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                return
        for message, future in batch:
            try:
                async with asyncio.timeout(settings.intake_timeout_seconds):
                    async with self.runtime.pool.acquire() as conn, conn.transaction():
                        result = await record_message(conn, self.desk, settings, message)
            except Exception as exc:
                future.set_exception(exc)
            else:
                # only now, after the commit, may the caller answer its sender
                future.set_result(result)


def _retrieve(future: asyncio.Future[IntakeResult]) -> None:
    if not future.cancelled():
        future.exception()


_writers: weakref.WeakKeyDictionary[AlertDesk, _GroupCommit] = weakref.WeakKeyDictionary()


async def take(runtime: Runtime, desk: AlertDesk, message: Message) -> IntakeResult:
    """Commit the message (or find it already committed), then publish; raises when not stored.

    The message may share its transaction with others that arrived meanwhile (group commit);
    either way it returns only after the commit that holds the message."""
    metrics = metrics_for(runtime.metrics)
    started = time.perf_counter()
    writers = _writers.get(desk)
    if writers is None or writers.runtime is not runtime:
        writers = _writers[desk] = _GroupCommit(runtime, desk)
    try:
        result = await writers.take(message)
    except (*DATABASE_DOWN, asyncpg.PostgresError):
        metrics.failures.labels(message.source.value).inc()
        raise
    metrics.seconds.labels(message.source.value).observe(time.perf_counter() - started)
    if result.duplicate:
        metrics.duplicates.labels(message.source.value).inc()
    for alarm in result.alarms if not result.duplicate else ():
        metrics.alarms.labels(message.source.value, alarm.kind.value, alarm.outcome.value).inc()
    await runtime.bus.publish(*result.events)
    return result
