"""Durable SMS: queued in the caller's transaction, sent by a worker, never lost, never sent twice.

`queue_sms` writes an `sms_messages` row in the transaction of the change
that caused it (an offer, a dispatch, a reply), so a message exists exactly
when that change committed, and a NOTIFY wakes the worker at the commit.

`SmsWorker` claims due rows with `SELECT … FOR UPDATE SKIP LOCKED` (several
instances share the queue), marks them `sending` with attempts + 1 and a
lease in a short transaction, sends outside any transaction, then records
the outcome: `sent` with the provider's SID; back to `queued` with
exponential backoff and jitter after a transient failure; `failed` with an
operator notice after a permanent one or too many attempts.

Delivery guarantee — at most once per message, with an operator told about
every message whose fate is unknown:
- Twilio's Messages API takes no idempotency key, so a send that was cut off
  cannot be asked "did you get this?" by key. What protects against
  duplicates is the state: a row is sent only from `queued`, and a row in
  `sending` is never re-sent.
- A clean stop (SIGTERM, restart) lets the sends in flight finish and records
  them, and claims nothing new, so nothing is left in `sending` and the next
  process sends each queued row exactly once. Only rows about to be sent are
  claimed (a round claims `sms.concurrency` rows and starts them all).
- If the process dies mid-send, the row stays `sending`; when its lease
  (`sms.lease_seconds`, longer than the send timeout) has run out it is
  marked `failed` with error code `unknown_outcome` and a notice, not re-sent:
  the send may have reached Twilio. The status callback URL carries our
  message id (`?m=<id>`), so if Twilio did take it, its callback records the
  SID and the real status even then (`providers.delivery`).
- A timeout is treated as transient (retried), the one place where a
  duplicate is possible. The retry waits at least `sms.retry_base_seconds`,
  and a row whose SID a status callback has recorded in the meantime is no
  longer `queued`, so the retry does not happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Counter

from dispatch.components import Health
from dispatch.config import ConfigError
from dispatch.database import Conn
from dispatch.events import DomainEvent, append_event
from dispatch.notices import Severity, raise_notice
from dispatch.runtime import Runtime
from providers.job_links import make_token
from providers.jobs import JOB_CODE_DIGITS, PartyType
from providers.sms import PermanentSmsError, SmsSender, TransientSmsError
from providers.templates import offer_fits, segments, signed

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "careline_sms"
MAX_BODY = 1600  # Twilio's limit for one message body
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


class SmsPurpose(StrEnum):
    OFFER = "offer"
    DISPATCH = "dispatch"
    FAMILY = "family"
    REMINDER = "reminder"
    CANCELLATION = "cancellation"
    PROOF_OF_SERVICE = "proof_of_service"
    HELP = "help"
    REPLY_ACK = "reply_ack"
    NOTICE = "notice"
    REPLY = "reply"  # inbound


# Who goes first when the queue is long: a team on its way before a reminder.
PRIORITY: dict[str, int] = {
    SmsPurpose.DISPATCH: 9,
    SmsPurpose.FAMILY: 7,
    SmsPurpose.OFFER: 6,
    SmsPurpose.REPLY_ACK: 5,
    SmsPurpose.CANCELLATION: 5,
    SmsPurpose.HELP: 4,
    SmsPurpose.REMINDER: 2,
    SmsPurpose.PROOF_OF_SERVICE: 1,
}

INSERT_OUTBOUND = """
INSERT INTO sms_messages (direction, to_e164, body, segments, status, purpose, language, priority,
                          idempotency_key, next_attempt_at, context_id, subject_type, subject_id)
VALUES ('out', $1, $2, $3, 'queued', $4, $5, $6, $7, COALESCE($8, now()), $9, $10, $11)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id
"""


async def queue_sms(
    conn: Conn,
    to_e164: str,
    body: str,
    *,
    purpose: str,
    idempotency_key: str,
    context_id: uuid.UUID | None = None,
    subject_type: str | None = None,
    subject_id: int | None = None,
    language: str = "zh-CN",
    priority: int | None = None,
    not_before: dt.datetime | None = None,
) -> int:
    """Queue one SMS in the caller's transaction; the id of the row (the existing one for a known key).

    The same `idempotency_key` queues nothing new, so a retried transition
    cannot text anyone twice. The body gets the 【12349】 signature if missing.
    """
    if not _E164.match(to_e164):
        raise ValueError("to_e164 must be an E.164 number such as +8613800138000")
    if not idempotency_key:
        raise ValueError("an idempotency key is required")
    text = signed(body.strip())
    if len(text) > MAX_BODY:
        raise ValueError(f"an SMS body is at most {MAX_BODY} characters")
    message_id: int | None = await conn.fetchval(
        INSERT_OUTBOUND,
        to_e164,
        text,
        segments(text),
        str(purpose),
        language,
        PRIORITY.get(str(purpose), 0) if priority is None else priority,
        idempotency_key,
        not_before,
        context_id,
        subject_type,
        subject_id,
    )
    if message_id is None:
        existing: int = await conn.fetchval(
            "SELECT id FROM sms_messages WHERE idempotency_key = $1", idempotency_key
        )
        return existing
    # delivered at commit, so the worker never looks before the row is visible
    await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return message_id


@dataclass(frozen=True)
class OutboundRow:
    """What sending and reporting on one outbound message needs from its row."""

    id: int
    to_e164: str
    body: str
    attempts: int
    purpose: str
    subject_type: str | None
    subject_id: int | None
    context_id: uuid.UUID | None


CLAIM_DUE = """
WITH due AS (
    SELECT id FROM sms_messages
    WHERE status = 'queued' AND next_attempt_at <= $1 AND provider_sid IS NULL
    ORDER BY priority DESC, next_attempt_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE sms_messages m
SET status = 'sending', attempts = m.attempts + 1, lease_until = $1 + make_interval(secs => $3),
    updated_at = $1
FROM due WHERE m.id = due.id
RETURNING m.id, m.to_e164, m.body, m.attempts, m.purpose, m.subject_type, m.subject_id, m.context_id
"""

RECOVER_STALE = """
UPDATE sms_messages
SET status = 'failed', error_code = 'unknown_outcome', lease_until = NULL, updated_at = $1,
    last_error = 'the sender stopped during the send; it may or may not have gone out'
WHERE status = 'sending' AND lease_until < $1
RETURNING id, to_e164, body, attempts, purpose, subject_type, subject_id, context_id
"""


@dataclass(frozen=True)
class DrainResult:
    """What one `drain_due` round did."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    recovered: int = 0


@dataclass
class SmsMetrics:
    sent: Counter
    failed: Counter
    retried: Counter


_metrics_by_registry: dict[int, tuple[CollectorRegistry, SmsMetrics]] = {}


def sms_metrics(registry: CollectorRegistry) -> SmsMetrics:
    # One set of counters per registry: a second worker on the same runtime (a restart) shares them.
    found = _metrics_by_registry.get(id(registry))
    if found is not None and found[0] is registry:
        return found[1]
    metrics = SmsMetrics(
        sent=Counter("careline_sms_sent", "SMS handed to the network", ["purpose"], registry=registry),
        failed=Counter(
            "careline_sms_failed",
            "SMS given up on (permanent error, attempts, unknown)",
            ["purpose"],
            registry=registry,
        ),
        retried=Counter(
            "careline_sms_retried",
            "SMS sends that failed transiently and were requeued",
            ["purpose"],
            registry=registry,
        ),
    )
    _metrics_by_registry[id(registry)] = (registry, metrics)
    return metrics


class SmsWorker:
    """The component that sends queued SMS (see the module text for the guarantees)."""

    name = "sms"

    def __init__(self, runtime: Runtime, sender: SmsSender, *, rng: random.Random | None = None) -> None:
        self.runtime = runtime
        self.sender = sender
        self.cfg = runtime.config.sms
        if self.cfg.lease_seconds <= self.cfg.send_timeout_seconds:
            raise ConfigError(
                f"sms.lease_seconds: expected more than sms.send_timeout_seconds "
                f"({self.cfg.send_timeout_seconds:g}), got {self.cfg.lease_seconds:g}"
            )
        self.metrics = sms_metrics(runtime.metrics)
        self.rng = rng or random.Random()
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listen_conn: Any = None
        self._last_error: str | None = None

    # -- component ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping.clear()
        conn = await self.runtime.pool.acquire()
        try:
            await conn.add_listener(NOTIFY_CHANNEL, self._notified)
        except BaseException:
            await self.runtime.pool.release(conn)
            raise
        self._listen_conn = conn
        self._task = asyncio.create_task(self._run(), name="sms-worker")
        log.info("SMS worker started (%s)", self.sender.backend)
        self._check_offer_length()

    def _check_offer_length(self) -> None:
        """Warn at start when job links are too long for an offer to fit in two segments."""
        config = self.runtime.config
        token = make_token(
            self.runtime.secret,
            job_id=10**8,
            party_type=PartyType.PROVIDER,
            party_id=10**5,
            expires_at=self.runtime.clock() + dt.timedelta(days=365),
        )
        link = f"{config.server.public_url}/j/{token}"
        code = "9" * (JOB_CODE_DIGITS + 1)
        if not offer_fits(link, code, language=config.locale.language):
            log.warning(
                "server.public_url is %d characters: job offers will need more than two SMS segments "
                "(about 28 fit for zh-CN, 20 for en)",
                len(config.server.public_url),
            )

    async def stop(self) -> None:
        """Let sends in flight finish (bounded by the shutdown grace), then let go of everything."""
        self._stopping.set()
        self._wake.set()
        task, self._task = self._task, None
        try:
            if task is not None:
                grace = self.runtime.config.server.shutdown_grace_seconds
                try:
                    done, _ = await asyncio.wait({task}, timeout=grace)
                except asyncio.CancelledError:
                    task.cancel()  # whoever stops us is being cancelled: the worker goes with it
                    raise
                if not done:
                    log.warning("SMS sends still running after %.0f s; cancelling them", grace)
                    task.cancel()
                    await asyncio.wait({task})
                if not task.cancelled() and task.exception() is not None:
                    log.error("the SMS worker had stopped on an error", exc_info=task.exception())
        finally:
            await self._unlisten()
            await self.sender.close()

    async def _unlisten(self) -> None:
        conn, self._listen_conn = self._listen_conn, None
        if conn is None:
            return
        try:
            await conn.remove_listener(NOTIFY_CHANNEL, self._notified)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            log.warning("could not UNLISTEN cleanly; the connection is released anyway")
        try:
            await self.runtime.pool.release(conn)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            log.warning("the LISTEN connection was already broken")

    async def health(self) -> Health:
        running = self._task is not None and not self._task.done()
        try:
            async with asyncio.timeout(2):
                row = await self.runtime.pool.fetchrow(
                    """SELECT count(*) FILTER (WHERE status = 'queued' AND next_attempt_at <= now()) AS due,
                              count(*) FILTER (WHERE status = 'sending') AS sending,
                              EXTRACT(EPOCH FROM now() - min(next_attempt_at)
                                      FILTER (WHERE status = 'queued' AND next_attempt_at <= now()))
                                  AS oldest_due_seconds
                       FROM sms_messages WHERE status IN ('queued', 'sending')"""
                )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            return Health(False, {"backend": self.sender.backend, "error": type(exc).__name__})
        assert row is not None
        oldest = float(row["oldest_due_seconds"] or 0)
        # a message due for five minutes means the sender is stuck or the network is down
        ok = running and oldest < 300
        return Health(
            ok,
            {
                "status": "ok" if ok else "degraded",
                "backend": self.sender.backend,
                "running": running,
                "due": row["due"],
                "sending": row["sending"],
                "oldest_due_seconds": round(oldest, 1),
                "last_error": self._last_error,
            },
        )

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                result = await self.drain_due()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                self._last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                log.warning("SMS round failed: %s", self._last_error)
                result = DrainResult()
            except Exception as exc:
                # The loop outlives a bad round (the rows stay queued or leased); /healthz shows the error.
                self._last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                log.exception("SMS round failed unexpectedly")
                result = DrainResult()
            else:
                self._last_error = None
            if result.claimed >= self.cfg.concurrency and not self._stopping.is_set():
                continue  # more may be waiting
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.cfg.poll_interval_seconds):
                    await self._wake.wait()

    # -- the work -------------------------------------------------------------------------------

    async def drain_due(self, now: dt.datetime | None = None) -> DrainResult:
        """One round: recover dead claims, claim what is due at `now`, send it, record the outcomes.

        A round claims at most `sms.concurrency` messages and sends them all at
        once, so every claimed message is in flight (none waits, claimed, for a
        free slot: a crash would leave it with an unknown fate for nothing).
        Tests pass `now` to move time; the running worker uses the runtime clock.
        """
        clock: Callable[[], dt.datetime] = (lambda: now) if now is not None else self.runtime.clock
        at = clock()
        recovered = await self.recover_stale(at)
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(CLAIM_DUE, at, self.cfg.concurrency, self.cfg.lease_seconds)
        claimed = [OutboundRow(**dict(r.items())) for r in rows]
        if not claimed:
            return DrainResult(recovered=recovered)
        outcomes = await asyncio.gather(
            *(self._deliver(message, clock) for message in claimed), return_exceptions=True
        )
        counts = dict.fromkeys(("sent", "retried", "failed"), 0)
        first_error: BaseException | None = None
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                log.error("recording an SMS outcome failed", exc_info=outcome)
                first_error = first_error or outcome
            else:
                counts[outcome] += 1
        if first_error is not None:
            raise first_error
        return DrainResult(claimed=len(claimed), recovered=recovered, **counts)

    async def _deliver(self, message: OutboundRow, clock: Callable[[], dt.datetime]) -> str:
        callback = f"{self.runtime.config.server.public_url}/webhooks/twilio/status?m={message.id}"
        try:
            result = await self.sender.send(message.to_e164, message.body, status_callback=callback)
        except TransientSmsError as exc:
            return await self._retry_or_fail(message, exc, clock())
        except PermanentSmsError as exc:
            await self._fail(message, exc.code, str(exc), clock())
            return "failed"
        except Exception as exc:
            # A sender bug must not take the other sends of this round down with it.
            log.exception("SMS #%d: the sender raised unexpectedly", message.id)
            return await self._retry_or_fail(
                message, TransientSmsError(f"internal error: {type(exc).__name__}"), clock()
            )
        await self._mark_sent(message, result.provider_sid, clock())
        return "sent"

    async def _mark_sent(self, message: OutboundRow, provider_sid: str, at: dt.datetime) -> None:
        sender_number = (self.cfg.twilio_from or None) if self.sender.backend == "twilio" else None
        await self.runtime.pool.execute(
            """UPDATE sms_messages
               SET status = CASE WHEN status = 'sending'
                                   OR (status = 'failed' AND error_code = 'unknown_outcome') THEN 'sent'
                                 ELSE status END,
                   provider_sid = COALESCE(provider_sid, $2), sent_at = COALESCE(sent_at, $3),
                   from_e164 = $4, lease_until = NULL, updated_at = $3
               WHERE id = $1""",
            message.id,
            provider_sid,
            at,
            sender_number,
        )
        self.metrics.sent.labels(message.purpose).inc()
        log.info("SMS #%d sent (%s, attempt %d)", message.id, message.purpose, message.attempts)
        await self.runtime.bus.publish(
            DomainEvent(
                kind="sms.sent",
                subject_type="sms",
                subject_id=message.id,
                data={"purpose": message.purpose, "about": [message.subject_type, message.subject_id]},
                context_id=message.context_id,
                occurred_at=at,
            )
        )

    def backoff(self, attempts: int) -> dt.timedelta:
        """Exponential with "equal jitter": between half and all of base·2^(n-1), capped."""
        ceiling = min(self.cfg.retry_max_seconds, self.cfg.retry_base_seconds * 2 ** max(0, attempts - 1))
        return dt.timedelta(seconds=ceiling / 2 + self.rng.uniform(0, ceiling / 2))

    async def _retry_or_fail(self, message: OutboundRow, exc: TransientSmsError, at: dt.datetime) -> str:
        if message.attempts >= self.cfg.max_attempts:
            await self._fail(
                message, exc.code or "transient", f"gave up after {message.attempts} attempts: {exc}", at
            )
            return "failed"
        due = at + self.backoff(message.attempts)
        await self.runtime.pool.execute(
            """UPDATE sms_messages
               SET status = 'queued', next_attempt_at = $2, last_error = $3, error_code = $4,
                   lease_until = NULL, updated_at = $5
               WHERE id = $1 AND status = 'sending'""",
            message.id,
            due,
            str(exc)[:500],
            exc.code,
            at,
        )
        self.metrics.retried.labels(message.purpose).inc()
        log.warning("SMS #%d: %s; retry %d at %s", message.id, exc, message.attempts + 1, due.isoformat())
        return "retried"

    async def _fail(self, message: OutboundRow, code: str, text: str, at: dt.datetime) -> None:
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            updated = await conn.fetchval(
                """UPDATE sms_messages
                   SET status = 'failed', error_code = $2, last_error = $3, lease_until = NULL,
                       updated_at = $4
                   WHERE id = $1 AND status = 'sending' RETURNING id""",
                message.id,
                code,
                text[:500],
                at,
            )
            events = await failure_records(conn, message, code, text, at) if updated else []
        if updated:
            self.metrics.failed.labels(message.purpose).inc()
            log.warning("SMS #%d failed (%s): %s", message.id, code, text)
            await self.runtime.bus.publish(*events)

    async def recover_stale(self, now: dt.datetime) -> int:
        """Rows left `sending` by a sender that died: failed as `unknown_outcome`, with a notice."""
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(RECOVER_STALE, now)
            events: list[DomainEvent] = []
            for row in rows:
                message = OutboundRow(**dict(row.items()))
                events += await failure_records(
                    conn, message, "unknown_outcome", "the sender stopped during the send", now
                )
        for row in rows:
            self.metrics.failed.labels(row["purpose"]).inc()
            log.warning("SMS #%d: sender died mid-send; not resent, operator notified", row["id"])
        await self.runtime.bus.publish(*events)
        return len(rows)


async def failure_records(
    conn: Conn, message: OutboundRow, code: str, text: str, at: dt.datetime, *, status: str = "failed"
) -> list[DomainEvent]:
    """The event row and the operator notice for an SMS given up on (in the caller's transaction)."""
    about_type = message.subject_type or "sms"
    about_id = message.subject_id if message.subject_type else message.id
    severity = Severity.CRITICAL if message.purpose == SmsPurpose.DISPATCH else Severity.WARNING
    unknown = code == "unknown_outcome"
    notice_text = (
        f"短信 #{message.id}（{message.purpose}）可能未发出：发送中断，请核实后人工联系"
        if unknown
        else f"短信 #{message.id}（{message.purpose}）发送失败（{code}），请人工联系"
    )
    event = await append_event(
        conn,
        subject_type="sms",
        subject_id=message.id,
        kind=f"sms.{status}",
        actor="system",
        to_state=status,
        reason=text[:200],
        context_id=message.context_id,
        data={
            "purpose": message.purpose,
            "error_code": code,
            "about": [message.subject_type, message.subject_id],
        },
        at=at,
    )
    notice = await raise_notice(
        conn,
        kind="sms.failed",
        severity=severity,
        text=notice_text,
        subject_type=about_type,
        subject_id=about_id,
        context_id=message.context_id,
        data={"sms_id": message.id, "error_code": code, "purpose": message.purpose},
        at=at,
    )
    return [event, notice]
