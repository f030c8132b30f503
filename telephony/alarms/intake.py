"""One message from a device becomes committed rows before anyone answers the sender.

`record_messages` stores what messages that arrived together mean: the arrival
statement (arrival.py) writes their receipts (so a resend stores nothing new, even
after a restart), marks their devices seen and stores every life sign; then each
other alarm gets its row and its meaning — an alert raised or joined through
`AlertDesk.raise_alert`, a timeline note (restore, cancel, a press just after the
alert closed), or a maintenance notice. `take` queues a message for a writer and
returns after the commit that holds it, then publishes the events; only then may
an adapter send its ACK / 202. Messages that arrive while WRITERS batches are being
written wait and go together (group commit: one commit for many), the batch's life
signs in one statement of their own first; a message that fails a shared
transaction is retried alone.

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
from collections.abc import Sequence
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
from telephony.alarms.arrival import Arrival, arrive, is_life_sign
from telephony.alarms.kinds import (
    ALERT_KINDS,
    MAINTENANCE_KINDS,
    AlarmKind,
    Outcome,
    Qualifier,
)
from telephony.alarms.messages import (
    AlarmResult,
    HeardDevice,
    IncomingAlarm,
    IntakeResult,
    Message,
    ReceiptConflict,
)

log = logging.getLogger(__name__)

# Errors that mean "the database is not there right now": the sender gets no ACK and retries.
DATABASE_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, TimeoutError)


INSERT_ALARM = """
INSERT INTO alarms (id, source, sender, device_id, resident_id, kind, qualifier, code, zone, partition,
                    payload, details, sender_at, received_at, outcome, alert_id, notice_id, integration_id,
                    context_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
"""


def alarms_of(message: Message, settings: AlarmsConfig) -> tuple[IncomingAlarm, ...]:
    """The alarms the message stores: its own, and a low-battery one when it reported a low level."""
    alarms = message.alarms
    battery_low = (
        message.battery_percent is not None and message.battery_percent <= settings.battery_low_percent
    )
    if battery_low and not any(a.kind is AlarmKind.LOW_BATTERY for a in alarms):
        # A cloud reporting a low level alongside anything else is a low-battery report too.
        alarms += (
            IncomingAlarm(
                AlarmKind.LOW_BATTERY,
                Qualifier.NEW,
                "battery",
                description=f"battery {message.battery_percent}%",
                sender_at=alarms[0].sender_at if alarms else None,
            ),
        )
    return alarms


def needs_transaction(messages: Sequence[Message], settings: AlarmsConfig) -> bool:
    """False when the arrival statement alone does everything (it is then its own transaction)."""
    return not all(
        not alarms or is_life_sign(alarms) for alarms in (alarms_of(m, settings) for m in messages)
    )


def life_signs_first(messages: Sequence[Message], settings: AlarmsConfig) -> list[list[int]]:
    """Positions of `messages` as the parts to commit one after the other: the life signs alone
    first (one statement, no transaction), then the rest. A test report need not wait for the
    alert work of an SOS that came with it; the SOS waits one statement. Kept as one part when a
    device or a receipt key is in both, so that device's messages are still taken in order."""
    heavy = [needs_transaction([m], settings) for m in messages]
    plain = [i for i, h in enumerate(heavy) if not h]
    rest = [i for i, h in enumerate(heavy) if h]
    if not plain or not rest:
        return [list(range(len(messages)))]

    def keys(part: list[int]) -> set[object]:
        return {messages[i].device for i in part} | {
            (messages[i].source, messages[i].receipt_key) for i in part if messages[i].receipt_key
        }

    if keys(plain) & keys(rest):
        return [list(range(len(messages)))]
    return [plain, rest]


def rounds(messages: Sequence[Message]) -> list[list[int]]:
    """Positions of `messages` in groups without a repeated receipt key, in order: a resend that
    arrives in the batch of its original goes in a later group and is found a repeat there."""
    groups: list[list[int]] = []
    seen: dict[tuple[str, str], int] = {}
    for i, message in enumerate(messages):
        key = (message.source.value, message.receipt_key) if message.receipt_key is not None else None
        level = seen.get(key, -1) + 1 if key else 0
        if key:
            seen[key] = level
        while len(groups) <= level:
            groups.append([])
        groups[level].append(i)
    return groups


async def record_messages(
    conn: Conn, desk: AlertDesk, settings: AlarmsConfig, messages: Sequence[Message]
) -> list[IntakeResult | ReceiptConflict]:
    """Everything each message means, in the caller's transaction (or in the arrival statement's own
    when `needs_transaction` is False and there is one round); publish `events` after the commit.
    A ReceiptConflict stands for a message that wrote nothing."""
    results: list[IntakeResult | ReceiptConflict | None] = [None] * len(messages)
    for group in rounds(messages):
        batch = [messages[i] for i in group]
        for i, result in zip(group, await _record_round(conn, desk, settings, batch), strict=True):
            results[i] = result
    return [r for r in results if r is not None]


async def _record_round(
    conn: Conn, desk: AlertDesk, settings: AlarmsConfig, messages: Sequence[Message]
) -> list[IntakeResult | ReceiptConflict]:
    alarms = [alarms_of(m, settings) for m in messages]
    arrivals = await arrive(conn, list(zip(messages, alarms, strict=True)))
    receipts = await _receipts(conn, [m for m, a in zip(messages, arrivals, strict=True) if not a.fresh])
    results: list[IntakeResult | ReceiptConflict] = []
    for message, its_alarms, arrival in zip(messages, alarms, arrivals, strict=True):
        if not arrival.fresh:
            digest, alarm_ids = receipts[(message.source.value, message.receipt_key or "")]
            if digest != message.digest:
                results.append(ReceiptConflict(f"{message.receipt_key} was already used for another message"))
            else:
                results.append(await _repeat(conn, alarm_ids))
        elif arrival.stored:
            results.append(
                IntakeResult(
                    duplicate=False,
                    device_id=arrival.device.id if arrival.device else None,
                    alarms=(AlarmResult(arrival.alarm_ids[0], its_alarms[0].kind, Outcome.LIFE_SIGN, None),),
                )
            )
        else:
            results.append(await _record_alarms(conn, desk, settings, message, its_alarms, arrival))
    return results


Receipts = dict[tuple[str, str], tuple[str, tuple[int, ...]]]


async def _receipts(conn: Conn, repeats: Sequence[Message]) -> Receipts:
    """(digest, alarm ids) of the receipts that blocked `repeats`."""
    if not repeats:
        return {}
    rows = await conn.fetch(
        """SELECT r.source, r.key, r.digest, r.alarm_ids FROM alarm_receipts r
           JOIN unnest($1::text[], $2::text[]) AS k(source, key) USING (source, key)""",
        [m.source.value for m in repeats],
        [m.receipt_key for m in repeats],
    )
    return {(r["source"], r["key"]): (r["digest"], tuple(r["alarm_ids"])) for r in rows}


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


async def _record_alarms(
    conn: Conn,
    desk: AlertDesk,
    settings: AlarmsConfig,
    message: Message,
    alarms: Sequence[IncomingAlarm],
    arrival: Arrival,
) -> IntakeResult:
    """What each alarm of a fresh message means, and its row under the id its receipt holds."""
    device = arrival.device
    events: list[DomainEvent] = []
    results: list[AlarmResult] = []
    for alarm, alarm_id in zip(alarms, arrival.alarm_ids, strict=True):
        handled = await _handle(conn, desk, settings, message, device, alarm, arrival)
        events.extend(handled.events)
        await conn.execute(
            INSERT_ALARM,
            alarm_id,
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
        results.append(AlarmResult(alarm_id, alarm.kind, handled.outcome, handled.alert_id))
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
    device: HeardDevice | None,
    alarm: IncomingAlarm,
    arrival: Arrival,
) -> _Handled:
    now = message.received_at
    alert_kind = ALERT_KINDS.get(alarm.kind)
    if alert_kind is not None and alarm.qualifier is not Qualifier.RESTORE:
        if alarm.kind is AlarmKind.TAMPER and alarm.qualifier is Qualifier.NEW and device is not None:
            # a unit pulled off the wall is an alert now and a repair job after it (refitted)
            await request_repair(conn, device.id, alarm.kind.value, now)
        return await _emergency(conn, desk, settings, message, device, alarm, alert_kind, arrival)
    if alert_kind is not None:
        return await _attach(conn, settings, message, device, alarm, alert_kind, "alarm.restored")
    if alarm.kind is AlarmKind.CANCEL:
        return await _cancel(conn, message, device, alarm)
    if alarm.kind in MAINTENANCE_KINDS:
        return await _maintenance(conn, message, device, alarm, now)
    return _Handled(Outcome.LIFE_SIGN)


async def _latest_alert(
    conn: Conn, device: HeardDevice | None, sender: str, kind: AlertKind | None
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
    device: HeardDevice | None,
    alarm: IncomingAlarm,
    alert_kind: AlertKind,
    arrival: Arrival,
) -> _Handled:
    now = message.received_at
    if arrival.latest_known:
        # read by the arrival statement: one round trip less for every press
        found = arrival.latest
        latest = (found.id, found.open, found.closed_at, found.context_id) if found else None
    else:
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
    device: HeardDevice | None,
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


async def _cancel(conn: Conn, message: Message, device: HeardDevice | None, alarm: IncomingAlarm) -> _Handled:
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
    conn: Conn, message: Message, device: HeardDevice | None, alarm: IncomingAlarm, now: dt.datetime
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
# Two: one writer can take the life signs that came while the other waits on an emergency's
# transaction; more only split the same work into smaller batches (measured: a third more
# database CPU per alarm with four, under a 500/s surge).
BATCH_MAX = 64
WRITERS = 2


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

    def _next_batch(self) -> list[tuple[Message, asyncio.Future[IntakeResult]]]:
        batch, self.queue = self.queue[:BATCH_MAX], self.queue[BATCH_MAX:]
        # handled in device order, so alerts of the same residents are locked in one order too
        batch.sort(key=lambda entry: _device_order(entry[0]))
        return batch

    async def _write(self) -> None:
        """Hold one connection while messages wait (no pool round trip per batch); let it go after
        anything went wrong with it, so the next batch starts on a clean one."""
        settings = self.runtime.config.alarms
        while self.queue:
            batch = self._next_batch()
            try:
                async with asyncio.timeout(settings.intake_timeout_seconds):
                    conn = await self.runtime.pool.acquire()
                    try:
                        # PostgreSQL otherwise re-plans the arrival statement (a dozen CTEs over arrays)
                        # for every batch, which costs more than running it; intake's statements are
                        # all keyed lookups that one plan serves. The pool's reset undoes it on release.
                        await conn.execute("SET plan_cache_mode = force_generic_plan")
                    except BaseException:
                        await self.runtime.pool.release(conn)
                        raise
            except DATABASE_DOWN as exc:
                for _, future in batch:
                    future.set_exception(exc)
                continue
            except BaseException:
                for _, future in batch:
                    future.cancel()
                raise
            try:
                while await self._commit(conn, batch) and self.queue:
                    batch = self._next_batch()
            except BaseException:
                # cancelled (the loop is closing): nothing of this batch was acknowledged
                for _, future in batch:
                    if not future.done():
                        future.cancel()
                raise
            finally:
                await self.runtime.pool.release(conn)

    async def _commit(self, conn: Conn, batch: list[tuple[Message, asyncio.Future[IntakeResult]]]) -> bool:
        """Commit the batch, life signs first, and answer every future; False when the connection
        should be let go (what was not tried goes back to the front of the queue)."""
        parts = life_signs_first([message for message, _ in batch], self.runtime.config.alarms)
        for n, part in enumerate(parts):
            if not await self._commit_part(conn, [batch[i] for i in part]):
                self.queue[:0] = [batch[i] for later in parts[n + 1 :] for i in later]
                return False
        return True

    async def _commit_part(
        self, conn: Conn, batch: list[tuple[Message, asyncio.Future[IntakeResult]]]
    ) -> bool:
        messages = [message for message, _ in batch]
        try:
            results = await self._record(conn, messages)
        except DATABASE_DOWN as exc:
            for _, future in batch:
                future.set_exception(exc)
            return False
        except Exception as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return True
            # One message failed the transaction (a deadlock, a bug): each alone, as without batching.
            # The error's type only: its text may quote a message's fields.
            log.warning(
                "a batch of %d alarms failed its shared transaction (%s); committing each alone",
                len(batch),
                type(exc).__name__,
            )
        else:
            # only now, after the commit, may the callers answer their senders
            for (_, future), result in zip(batch, results, strict=True):
                if isinstance(result, ReceiptConflict):
                    future.set_exception(result)
                else:
                    future.set_result(result)
            return True
        healthy = True
        for message, future in batch:
            try:
                [result] = await self._record(conn, [message])
            except Exception as exc:
                healthy = healthy and not isinstance(exc, DATABASE_DOWN)
                future.set_exception(exc)
            else:
                if isinstance(result, ReceiptConflict):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        return healthy

    async def _record(self, conn: Conn, messages: list[Message]) -> list[IntakeResult | ReceiptConflict]:
        settings = self.runtime.config.alarms
        async with asyncio.timeout(settings.intake_timeout_seconds):
            if len(rounds(messages)) == 1 and not needs_transaction(messages, settings):
                # one statement: committed when it returns
                return await record_messages(conn, self.desk, settings, messages)
            async with conn.transaction():
                return await record_messages(conn, self.desk, settings, messages)


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
