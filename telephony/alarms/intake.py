"""One message from a device becomes committed rows before anyone answers the sender.

Intake has two steps:
1. `store`: the arrival statement (arrival.py) writes the messages' receipts (so a resend
   stores nothing new, even after a restart), marks their devices seen and stores every
   alarm, a life sign as done and anything else `pending`. It is one statement, so the
   alarms are committed when it returns: only then may an adapter send its ACK / 202.
   Messages that arrive while WRITERS statements are running wait and go together (group
   commit: one statement and one commit for many); a message that fails a shared statement
   is retried alone.
2. handling: right after, the desk's handler gives the pending alarms their meaning
   (handling.py: an alert raised or joined, a note, a notice) in one transaction per batch,
   in the order they were stored, and publishes the events. A pending alarm the handler
   could not finish (the database went away, a bug) stays pending: `PendingAlarms` hands
   it to the handler again every `alarms.handling_retry_seconds` and at start, so a crash
   between the two steps delays an alert by a restart, never loses it.

`take` does both and returns what each alarm did (Contact ID from the dialplan, tests);
the DC-09 receiver and the device-cloud API answer after `store`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from dispatch.alert_desk import AlertDesk
from dispatch.components import Health
from dispatch.config import AlarmsConfig
from dispatch.database import Conn
from dispatch.notices import Severity, raise_notice
from dispatch.runtime import Runtime
from dispatch.tasks import cancel_and_wait
from telephony.alarms.arrival import arrive, is_life_sign
from telephony.alarms.handling import handle_alarms
from telephony.alarms.kinds import KIND_NAMES, AlarmKind, Outcome, Qualifier
from telephony.alarms.messages import (
    AlarmResult,
    IncomingAlarm,
    IntakeResult,
    Message,
    ReceiptConflict,
)

log = logging.getLogger(__name__)

# Errors that mean "the database is not there right now": the sender gets no ACK and retries.
DATABASE_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, TimeoutError)


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
    conn: Conn, settings: AlarmsConfig, messages: Sequence[Message]
) -> list[IntakeResult | ReceiptConflict]:
    """Store `messages`: one arrival statement a round, each its own transaction. An alarm that is
    not a life sign comes back `pending`. A ReceiptConflict stands for a message that wrote nothing."""
    results: list[IntakeResult | ReceiptConflict | None] = [None] * len(messages)
    for group in rounds(messages):
        batch = [messages[i] for i in group]
        for i, result in zip(group, await _record_round(conn, settings, batch), strict=True):
            results[i] = result
    return [r for r in results if r is not None]


async def _record_round(
    conn: Conn, settings: AlarmsConfig, messages: Sequence[Message]
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
            continue
        results.append(
            IntakeResult(
                duplicate=False,
                device_id=arrival.device.id if arrival.device else None,
                alarms=tuple(
                    AlarmResult(
                        alarm_id,
                        alarm.kind,
                        Outcome.LIFE_SIGN if is_life_sign(alarm) else Outcome.PENDING,
                        None,
                    )
                    for alarm_id, alarm in zip(arrival.alarm_ids, its_alarms, strict=True)
                ),
            )
        )
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


# -- metrics -------------------------------------------------------------------------------


class IntakeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.alarms = Counter(
            "careline_alarms",
            "Alarms stored, by what they did",
            ["source", "kind", "outcome"],
            registry=registry,
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
            "From receipt to commit of one message (when its sender may be answered)",
            ["source"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self.handled_seconds = Histogram(
            "careline_alarm_handled_seconds",
            "From receipt to the alert raised or joined (or the note, the notice) of one stored alarm",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.handling_failures = Counter(
            "careline_alarm_handling_failures",
            "Stored alarms whose handling failed (left pending, tried again)",
            registry=registry,
        )
        self.pending = Gauge(
            "careline_alarms_pending",
            "Stored alarms not yet handled for longer than the retry interval, at the last sweep",
            registry=registry,
        )


_metrics: weakref.WeakKeyDictionary[CollectorRegistry, IntakeMetrics] = weakref.WeakKeyDictionary()


def metrics_for(registry: CollectorRegistry) -> IntakeMetrics:
    """One set of collectors per registry, however many adapters feed it."""
    found = _metrics.get(registry)
    if found is None:
        found = _metrics[registry] = IntakeMetrics(registry)
    return found


def _count(metrics: IntakeMetrics, source: str, alarms: Sequence[AlarmResult]) -> None:
    for alarm in alarms:
        if alarm.outcome is not Outcome.PENDING:
            metrics.alarms.labels(source, alarm.kind.value, alarm.outcome.value).inc()


# -- step 1: store ---------------------------------------------------------------------------

# Group commit: messages that arrive while others are being written wait and go together, up to
# BATCH_MAX in one statement (one commit, one fsync), in at most WRITERS statements at once.
BATCH_MAX = 64
WRITERS = 2
# A writer (and the handler) keeps its connection this long after its queue ran dry, for the next
# message: under a surge the queue is empty between most messages, and giving the connection back
# each time cost two more round trips a message (the pool's reset, then setting the plan mode again).
LINGER_SECONDS = 0.25


async def _more(queue: list[Any], arrived: asyncio.Event) -> bool:
    """True as soon as `queue` has work, False when LINGER_SECONDS passed without any."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LINGER_SECONDS
    while not queue:
        arrived.clear()
        try:
            async with asyncio.timeout_at(deadline):
                await arrived.wait()
        except TimeoutError:
            return bool(queue)
    return True


Results = dict[int, AlarmResult]


@dataclass(frozen=True)
class Stored:
    """A message as committed: its sender may be answered now. `result` says `pending` for the
    alarms the handler is giving their meaning; `handled` resolves with their results."""

    result: IntakeResult
    handled: asyncio.Future[Results] | None = None

    async def outcome(self) -> IntakeResult:
        """What every alarm of the message did, once handled (raises when handling failed)."""
        if self.handled is None:
            return self.result
        results = await asyncio.shield(self.handled)
        return replace(self.result, alarms=tuple(results.get(a.alarm_id, a) for a in self.result.alarms))


class _Intake:
    """One desk's intake: the writers that store, and the handler behind them. Tasks exist only
    while work waits (and LINGER_SECONDS after); each is held here and ends when its queue stays
    empty, and every message's outcome reaches its caller's future."""

    def __init__(self, runtime: Runtime, desk: AlertDesk) -> None:
        self.runtime = runtime
        self.desk = desk
        self.metrics = metrics_for(runtime.metrics)
        self.queue: list[tuple[Message, asyncio.Future[Stored]]] = []
        self.arrived = asyncio.Event()
        self.writers: set[asyncio.Task[None]] = set()
        self.handler = _Handler(runtime, desk, self.metrics)

    async def store(self, message: Message) -> Stored:
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self.queue.append((message, future))
        self.arrived.set()
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

    def _next_batch(self) -> list[tuple[Message, asyncio.Future[Stored]]]:
        # in place: a lingering writer watches this very list (`_more`)
        batch = self.queue[:BATCH_MAX]
        del self.queue[:BATCH_MAX]
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
                while await self._commit(conn, batch) and await _more(self.queue, self.arrived):
                    batch = self._next_batch()
            except BaseException:
                # cancelled (the loop is closing): nothing of this batch was acknowledged
                for _, future in batch:
                    if not future.done():
                        future.cancel()
                raise
            finally:
                await self.runtime.pool.release(conn)

    async def _commit(self, conn: Conn, batch: list[tuple[Message, asyncio.Future[Stored]]]) -> bool:
        """Store the batch and answer every future; False when the connection should be let go."""
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
            # One message failed the statement (a bug, a value PostgreSQL refuses): each alone, as
            # without batching. The error's type only: its text may quote a message's fields.
            log.warning(
                "a batch of %d alarms failed its shared statement (%s); storing each alone",
                len(batch),
                type(exc).__name__,
            )
        else:
            # only now, after the commit, may the callers answer their senders
            for (message, future), result in zip(batch, results, strict=True):
                self._deliver(message, future, result)
            return True
        healthy = True
        for message, future in batch:
            try:
                [result] = await self._record(conn, [message])
            except Exception as exc:
                healthy = healthy and not isinstance(exc, DATABASE_DOWN)
                future.set_exception(exc)
            else:
                self._deliver(message, future, result)
        return healthy

    async def _record(self, conn: Conn, messages: list[Message]) -> list[IntakeResult | ReceiptConflict]:
        settings = self.runtime.config.alarms
        async with asyncio.timeout(settings.intake_timeout_seconds):
            return await record_messages(conn, settings, messages)

    def _deliver(
        self, message: Message, future: asyncio.Future[Stored], result: IntakeResult | ReceiptConflict
    ) -> None:
        """Answer the caller, and hand what is pending to the handler (a repeat's too, so that its
        caller learns what the original did once that is known)."""
        if isinstance(result, ReceiptConflict):
            future.set_exception(result)
            return
        _count(self.metrics, message.source.value, result.alarms if not result.duplicate else ())
        pending = tuple(a.alarm_id for a in result.alarms if a.outcome is Outcome.PENDING)
        handled = self.handler.enqueue(pending, message.source.value, answer=True) if pending else None
        future.set_result(Stored(result, handled))


# -- step 2: handle --------------------------------------------------------------------------

# alarm ids handed over together (one message's), their source (for the metrics), and the future
# of whoever waits for their results (None: nobody, as for the retry sweep's)
_Entry = tuple[tuple[int, ...], str, "asyncio.Future[Results] | None"]


class _Handler:
    """Gives pending alarms their meaning, a batch a transaction, in the order they were handed
    over: one task at a time, so a restore is never handled before the press it answers."""

    def __init__(self, runtime: Runtime, desk: AlertDesk, metrics: IntakeMetrics) -> None:
        self.runtime = runtime
        self.desk = desk
        self.metrics = metrics
        self.queue: list[_Entry] = []
        self.arrived = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        # set while nothing is queued or being handled (what `settled` waits for)
        self.idle = asyncio.Event()
        self.idle.set()

    def enqueue(
        self, alarm_ids: tuple[int, ...], source: str, *, answer: bool
    ) -> asyncio.Future[Results] | None:
        future: asyncio.Future[Results] | None = None
        if answer:
            future = asyncio.get_running_loop().create_future()
            # nobody may wait for it (an ACK needs only the store): never "exception not retrieved"
            future.add_done_callback(_retrieve)
        self.queue.append((alarm_ids, source, future))
        self.idle.clear()
        self.arrived.set()
        if self.task is None:
            self.task = asyncio.create_task(self._run(), name="alarm-handling")
            self.task.add_done_callback(self._ended)
        return future

    def _ended(self, _task: asyncio.Task[None]) -> None:
        self.task = None
        if self.queue and not _task.cancelled():
            # handed work after the loop decided it was done: go on with it
            self.task = asyncio.create_task(self._run(), name="alarm-handling")
            self.task.add_done_callback(self._ended)
        else:
            self.idle.set()

    def _next_batch(self) -> list[_Entry]:
        taken, count = 0, 0
        for ids, _, _ in self.queue:
            if taken and count + len(ids) > BATCH_MAX:
                break
            taken, count = taken + 1, count + len(ids)
        batch = self.queue[:taken]
        del self.queue[:taken]
        return batch

    async def _run(self) -> None:
        """Hold one connection while alarms wait (see LINGER_SECONDS); let it go after anything went
        wrong with it, so the next batch starts on a clean one."""
        settings = self.runtime.config.alarms
        while self.queue:
            try:
                conn = await self.runtime.pool.acquire(timeout=settings.intake_timeout_seconds)
            except DATABASE_DOWN as exc:
                self._fail(self._next_batch(), exc)
                continue
            try:
                while self.queue:
                    batch = self._next_batch()
                    try:
                        healthy = await self._handle(conn, batch)
                    except BaseException:
                        for _, _, future in batch:
                            if future is not None and not future.done():
                                future.cancel()
                        raise
                    if not healthy:
                        break
                    if not self.queue:
                        self.idle.set()
                        if not await _more(self.queue, self.arrived):
                            break
            finally:
                await self.runtime.pool.release(conn)

    async def _handle(self, conn: Conn, batch: list[_Entry]) -> bool:
        """Handle the batch in one transaction and answer its futures; False when the connection
        should be let go. When the shared transaction fails, each entry is tried alone, so the
        others go on; an alarm that fails alone, or while the database is away, stays pending for
        the retry sweep (and one that fails alone is reported to the floor)."""
        settings = self.runtime.config.alarms
        ids = [alarm_id for alarm_ids, _, _ in batch for alarm_id in alarm_ids]
        try:
            async with asyncio.timeout(settings.intake_timeout_seconds), conn.transaction():
                results, events, now_handled = await handle_alarms(
                    conn, self.desk, settings, ids, self.runtime.clock()
                )
        except DATABASE_DOWN as exc:
            self._fail(batch, exc)
            log.warning("alarms %s not handled yet: database unavailable (%s)", ids, type(exc).__name__)
            return False
        except Exception as exc:
            if len(batch) > 1:
                healthy = True
                for entry in batch:
                    healthy = await self._handle(conn, [entry]) and healthy
                return healthy
            self._fail(batch, exc)
            await self._report(ids, exc)
            return True
        # counted once, when handled: a repeat or a retry may hand over an alarm handled before
        sources = {alarm_id: source for alarm_ids, source, _ in batch for alarm_id in alarm_ids}
        handled_at = self.runtime.clock()
        for alarm in now_handled:
            _count(self.metrics, sources[alarm.id], [results[alarm.id]])
            self.metrics.handled_seconds.observe(max(0.0, (handled_at - alarm.received_at).total_seconds()))
        for alarm_ids, _, future in batch:
            if future is not None and not future.done():
                future.set_result({i: results[i] for i in alarm_ids if i in results})
        await self.runtime.bus.publish(*events)
        return True

    def _fail(self, batch: list[_Entry], exc: BaseException) -> None:
        self.metrics.handling_failures.inc(sum(len(alarm_ids) for alarm_ids, _, _ in batch))
        for _, _, future in batch:
            if future is not None and not future.done():
                future.set_exception(exc)

    async def _report(self, alarm_ids: list[int], exc: Exception) -> None:
        """An alarm that cannot be handled must reach a person now, not only a log."""
        log.error("alarms %s stored but not handled (%s); tried again later", alarm_ids, type(exc).__name__)
        try:
            async with self.runtime.pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(UNHANDLED, alarm_ids)
                events = [
                    await raise_notice(
                        conn,
                        kind="alarm.unhandled",
                        severity=Severity.CRITICAL,
                        text=_unhandled_text(row, self.runtime.tz),
                        subject_type="alarm",
                        subject_id=row["id"],
                        data={
                            "error": type(exc).__name__,
                            "alarm_kind": row["kind"],
                            "resident_id": row["rid"],
                        },
                        at=self.runtime.clock(),
                    )
                    for row in rows
                ]
            await self.runtime.bus.publish(*events)
        except Exception:
            log.exception("could not raise the notice for unhandled alarms %s", alarm_ids)


# The stored alarms that failed, with whose they are, and not noticed before (a retry fails again).
UNHANDLED = """
SELECT a.id, a.kind, a.received_at, a.sender, r.id AS rid, r.name AS resident
FROM alarms a LEFT JOIN residents r ON r.id = a.resident_id
WHERE a.id = ANY($1::bigint[]) AND NOT EXISTS (
    SELECT 1 FROM notices n
    WHERE n.kind = 'alarm.unhandled' AND n.subject_type = 'alarm' AND n.subject_id = a.id
)
ORDER BY a.id
"""


def _unhandled_text(row: Any, tz: dt.tzinfo) -> str:
    """What the operator needs to act without the system: what, whose, when."""
    zh, en = KIND_NAMES.get(row["kind"], (row["kind"], row["kind"]))
    at = row["received_at"].astimezone(tz).strftime("%H:%M:%S")
    if row["rid"] is not None:
        who_zh, who_en = (
            f"老人 {row['resident']}（档案 {row['rid']}）",
            f"resident {row['resident']} (#{row['rid']})",
        )
    else:
        who_zh, who_en = f"未登记设备 {row['sender']}", f"unregistered device {row['sender']}"
    return (
        f"报警 {row['id']}（{zh}，{who_zh}，{at} 收到）已存档，但系统未能自动生成警情："
        "请立即联系老人并人工处置。"
        f" / Alarm {row['id']} ({en}, {who_en}, received {at}) is stored but raised no alert:"
        " contact the resident and act by hand now."
    )


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


_intakes: weakref.WeakKeyDictionary[AlertDesk, _Intake] = weakref.WeakKeyDictionary()


def _intake(runtime: Runtime, desk: AlertDesk) -> _Intake:
    found = _intakes.get(desk)
    if found is None or found.runtime is not runtime:
        found = _intakes[desk] = _Intake(runtime, desk)
    return found


async def store(runtime: Runtime, desk: AlertDesk, message: Message) -> Stored:
    """Commit the message (or find it already committed); raises when not stored. Its sender may be
    answered when this returns; the handler is giving its pending alarms their meaning meanwhile.

    The message may share its statement with others that arrived meanwhile (group commit);
    either way it returns only after the commit that holds the message."""
    metrics = metrics_for(runtime.metrics)
    started = time.perf_counter()
    try:
        stored = await _intake(runtime, desk).store(message)
    except (*DATABASE_DOWN, asyncpg.PostgresError):
        metrics.failures.labels(message.source.value).inc()
        raise
    metrics.seconds.labels(message.source.value).observe(time.perf_counter() - started)
    if stored.result.duplicate:
        metrics.duplicates.labels(message.source.value).inc()
    return stored


async def take(runtime: Runtime, desk: AlertDesk, message: Message) -> IntakeResult:
    """`store`, then wait for what each alarm did (an alert raised or joined, a note, a notice)."""
    return await (await store(runtime, desk, message)).outcome()


async def settled(runtime: Runtime, desk: AlertDesk) -> None:
    """Until the desk's handler has nothing left to do (tests; a stop that lets it finish)."""
    await _intake(runtime, desk).handler.idle.wait()


# -- pending alarms after a crash or a failure --------------------------------------------------

PENDING = """
SELECT id, source FROM alarms WHERE outcome = 'pending' AND received_at <= $1
ORDER BY received_at, id LIMIT $2
"""


class PendingAlarms:
    """A component: hands every pending alarm to the handler at start (what a crash left between
    the two steps), then every `alarms.handling_retry_seconds` those still pending that long (what
    a database outage or a failure left). Its stop lets the handler finish what it holds."""

    name = "alarm-handling"

    def __init__(self, runtime: Runtime, desk: AlertDesk, *, stop_grace_seconds: float = 5.0) -> None:
        self.runtime = runtime
        self.desk = desk
        self.interval = runtime.config.alarms.handling_retry_seconds
        self.stop_grace_seconds = stop_grace_seconds
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        # pending past a retry interval at the last sweep: stuck, each needs a look
        self.waiting = 0
        # pending when the service started (a crash or a stop between the two steps): handled now
        self.recovered_at_start = 0

    async def start(self) -> None:
        self.recovered_at_start = await self.sweep(everything=True)
        self._task = asyncio.create_task(self._loop(), name="alarm-handling-retry")

    async def sweep(self, *, everything: bool = False) -> int:
        """Hand pending alarms to the handler: all of them, or those pending for the retry interval."""
        now = self.runtime.clock()
        before = now if everything else now - dt.timedelta(seconds=self.interval)
        handler = _intake(self.runtime, self.desk).handler
        rows = await self.runtime.pool.fetch(PENDING, before, 10_000)
        for row in rows:
            handler.enqueue((row["id"],), row["source"], answer=False)
        if rows and everything:
            log.warning("%d alarms were left pending by the last run; handling them now", len(rows))
        elif rows:
            log.warning(
                "%d stored alarms still have no alert after %g s; handling them again",
                len(rows),
                self.interval,
            )
            self.waiting = len(rows)
        else:
            self.waiting = 0
        metrics_for(self.runtime.metrics).pending.set(self.waiting)
        return len(rows)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sweep()
                self.last_error = None
            except Exception as exc:
                # the sweep outlives any one bad round: a dead sweep is an alarm left pending
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("pending-alarm sweep failed (%s); carrying on", type(exc).__name__)

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        try:
            async with asyncio.timeout(self.stop_grace_seconds):
                await settled(self.runtime, self.desk)
        except TimeoutError:
            log.warning("stopping with alarms still being handled: they are handled at the next start")

    async def health(self) -> Health:
        ok = self._task is not None and not self._task.done() and self.last_error is None and not self.waiting
        return Health(
            ok,
            {
                "status": "ok" if ok else "degraded",
                "pending": self.waiting,
                "recovered_at_start": self.recovered_at_start,
                "error": self.last_error,
            },
        )
