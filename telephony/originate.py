"""Calls Careline places through Asterisk: callbacks, care calls, rating calls, family calls.

Every call placed is first a `call_attempts` row (and a deadline row for its
timeout), committed before the Originate is sent; the ActionID is the row's
public name (`carecall-0005`). Asterisk answers asynchronously:

- the Response to the action: `Success` (queued) or `Error` (refused: failed);
- OriginateResponse: Reason 0 not created, 1 hung up, 3 no answer, 4 answered,
  5 busy, 8 congestion (the last control frame on the channel);
- for a care or rating call, the IVR's `UserEvent(CareCallResult, CallId, Digit,
  ReadStatus)`, CallId being the ActionID: the digit pressed.

A callback (and a family call from the console) rings the operator's phone first;
its OriginateResponse then only says the operator answered, so its result is the
call's: answered when the resident answered, else busy or no answer as the call
ended. If Asterisk never says how an attempt went, the deadline fails it.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import asyncpg

from dispatch.config import AsteriskConfig
from dispatch.database import Conn
from dispatch.deadlines import Deadline, DeadlineHandlers, cancel_deadlines, schedule_deadline
from dispatch.events import DomainEvent, append_event
from dispatch.phones import PhoneBook, PhoneNumberError
from dispatch.runtime import Runtime
from telephony.calls import Disposition

log = logging.getLogger(__name__)

TIMEOUT_KIND = "call_attempt.timeout"
# Beyond the ring time, how long Asterisk may take to report an attempt before it is failed.
REPORT_GRACE_SECONDS = 30.0


class Purpose(StrEnum):
    CALLBACK = "callback"
    CARE_CALL = "care_call"
    RATING = "rating"
    FAMILY = "family"


class AttemptState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    FINISHED = "finished"


class AttemptResult(StrEnum):
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"


REASONS: dict[int, tuple[AttemptResult, str]] = {
    # Asterisk's "no control frame seen": the channel could not be made, or the far end turned the
    # call down without a busy or congestion signal (a rejection through a Local channel ends so)
    0: (AttemptResult.FAILED, "the call could not be put through (no channel, or refused)"),
    1: (AttemptResult.FAILED, "hung up before answering"),
    3: (AttemptResult.NO_ANSWER, "rang out without an answer"),
    4: (AttemptResult.ANSWERED, "answered"),
    5: (AttemptResult.BUSY, "busy"),
    8: (AttemptResult.FAILED, "congestion"),
}
_FROM_DISPOSITION = {
    Disposition.ANSWERED: AttemptResult.ANSWERED,
    Disposition.BUSY: AttemptResult.BUSY,
    Disposition.NO_ANSWER: AttemptResult.NO_ANSWER,
    Disposition.ABANDONED: AttemptResult.NO_ANSWER,
    Disposition.FAILED: AttemptResult.FAILED,
}
_ACTION_PREFIX = {
    Purpose.CALLBACK: "callback",
    Purpose.CARE_CALL: "carecall",
    Purpose.RATING: "rating",
    Purpose.FAMILY: "family",
}
# The channel variable the dialplan reads back (the IVR reports it as CallId).
_VARIABLE = {
    Purpose.CALLBACK: "CALLBACK_ID",
    Purpose.CARE_CALL: "CARE_CALL_ID",
    Purpose.RATING: "CARE_CALL_ID",
    Purpose.FAMILY: "FAMILY_CALL_ID",
}


class CallError(Exception):
    """A call that cannot be placed; `code` is stable for API clients."""

    code = "call_error"
    status = 400
    field = ""


class NotFound(CallError):
    code = "not_found"
    status = 404


class NoNumber(CallError):
    code = "no_number"
    status = 409


class TelephonyUnavailable(CallError):
    """No Asterisk link is up. The attempt is written anyway, failed, so the try is on record."""

    code = "asterisk_unavailable"
    status = 409

    def __init__(self, attempt: CallAttempt) -> None:
        super().__init__(f"no Asterisk link is up: call attempt {attempt.action_id} failed")
        self.attempt = attempt


@dataclass(frozen=True)
class CallAttempt:
    id: int
    purpose: Purpose
    server: str
    action_id: str
    target: str
    resident_id: int | None
    alert_id: int | None
    contact_id: int | None
    operator: str | None
    subject_type: str | None
    subject_id: int | None
    requested_by: str
    context_id: uuid.UUID
    state: AttemptState
    result: AttemptResult | None
    reason_code: int | None
    reason: str
    digit: str | None
    read_status: str | None
    call_id: int | None
    created_at: dt.datetime
    queued_at: dt.datetime | None
    finished_at: dt.datetime | None
    reported_at: dt.datetime | None
    timeout_at: dt.datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> CallAttempt:
        values = {name: row[name] for name in cls.__dataclass_fields__}
        values["purpose"] = Purpose(values["purpose"])
        values["state"] = AttemptState(values["state"])
        values["result"] = AttemptResult(values["result"]) if values["result"] else None
        return cls(**values)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            data[name] = value.isoformat() if isinstance(value, dt.datetime) else value
        data["context_id"] = str(self.context_id)
        return data


COLUMNS = """id, purpose, server, action_id, target, resident_id, alert_id, contact_id, operator,
    subject_type, subject_id, requested_by, context_id, state, result, reason_code, reason, digit,
    read_status, call_id, created_at, queued_at, finished_at, reported_at, timeout_at"""


async def get_attempt(conn: Conn, attempt_id: int) -> CallAttempt | None:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM call_attempts WHERE id = $1", attempt_id)
    return CallAttempt.from_row(row) if row else None


# -- what Asterisk said, applied by the recorder in its transaction ------------------------------


@dataclass(frozen=True)
class OriginateAccepted:
    """The Response to the Originate action (None: the link went down before it came)."""

    action_id: str
    accepted: bool
    message: str
    at: float


@dataclass(frozen=True)
class OriginateEnded:
    """OriginateResponse; `linked` says whether the call it placed was found."""

    action_id: str
    success: bool
    reason: int | None
    at: float
    linked: bool


@dataclass(frozen=True)
class IvrReport:
    """UserEvent CareCallResult from the IVR."""

    action_id: str
    digit: str | None
    read_status: str | None
    at: float


AttemptUpdate = OriginateAccepted | OriginateEnded | IvrReport


def _when(at: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(at, dt.UTC)


FINISH = f"""
UPDATE call_attempts SET state = 'finished', result = $2, reason_code = COALESCE($3, reason_code),
    reason = $4, finished_at = $5
WHERE action_id = $1 AND state <> 'finished' {{extra}}
RETURNING {COLUMNS}
"""


async def _finish(
    conn: Conn,
    action_id: str,
    result: AttemptResult,
    reason_code: int | None,
    reason: str,
    at: dt.datetime,
    actor: str,
    *,
    extra: str = "",
) -> list[DomainEvent]:
    row = await conn.fetchrow(FINISH.format(extra=extra), action_id, result.value, reason_code, reason, at)
    if row is None:
        return []
    attempt = CallAttempt.from_row(row)
    await cancel_deadlines(conn, subject_type="call_attempt", subject_id=attempt.id, at=at)
    return [await _attempt_event(conn, attempt, "call_attempt.finished", actor, at)]


async def _attempt_event(
    conn: Conn, attempt: CallAttempt, kind: str, actor: str, at: dt.datetime
) -> DomainEvent:
    return await append_event(
        conn,
        subject_type="call_attempt",
        subject_id=attempt.id,
        kind=kind,
        actor=actor,
        context_id=attempt.context_id,
        data={
            "attempt_id": attempt.id,
            "action_id": attempt.action_id,
            "purpose": attempt.purpose.value,
            "result": attempt.result.value if attempt.result else None,
            "reason_code": attempt.reason_code,
            "reason": attempt.reason,
            "digit": attempt.digit,
            "read_status": attempt.read_status,
            "resident_id": attempt.resident_id,
            "alert_id": attempt.alert_id,
            "subject_type": attempt.subject_type,
            "subject_id": attempt.subject_id,
            "call_id": attempt.call_id,
        },
        at=at,
    )


async def apply_update(conn: Conn, update: AttemptUpdate, actor: str) -> list[DomainEvent]:
    """Write one report of Asterisk's about an attempt; the events to publish after commit."""
    at = _when(update.at)
    match update:
        case OriginateAccepted(accepted=True):
            await conn.execute(
                """UPDATE call_attempts SET state = 'queued', queued_at = $2
                   WHERE action_id = $1 AND state = 'pending'""",
                update.action_id,
                at,
            )
            return []
        case OriginateAccepted():
            reason = (
                f"Asterisk refused the call: {update.message}"
                if update.message
                else "Asterisk refused the call"
            )
            return await _finish(conn, update.action_id, AttemptResult.FAILED, None, reason, at, actor)
        case OriginateEnded():
            result, text = REASONS.get(
                update.reason if update.reason is not None else -1, (AttemptResult.FAILED, "")
            )
            if not text:
                text = f"Asterisk reason {update.reason}" if update.reason is not None else "no reason given"
            if update.success and update.linked:
                # Answered by the first leg. A callback's first leg is the operator: the
                # resident's answer is the call's to tell (finish_from_call); a care call's first
                # leg is the resident: done now.
                await conn.execute(
                    """UPDATE call_attempts SET reason_code = $2, state = 'queued',
                           queued_at = COALESCE(queued_at, $3)
                       WHERE action_id = $1 AND state <> 'finished'""",
                    update.action_id,
                    update.reason,
                    at,
                )
                return await _finish(
                    conn,
                    update.action_id,
                    result,
                    update.reason,
                    text,
                    at,
                    actor,
                    extra="AND operator IS NULL",
                )
            return await _finish(conn, update.action_id, result, update.reason, text, at, actor)
        case IvrReport():
            row = await conn.fetchrow(
                f"""UPDATE call_attempts SET digit = $2, read_status = $3, reported_at = $4
                    WHERE action_id = $1 RETURNING {COLUMNS}""",
                update.action_id,
                update.digit,
                update.read_status,
                at,
            )
            if row is None:
                log.warning("an IVR report named an attempt Careline does not know")
                return []
            return [await _attempt_event(conn, CallAttempt.from_row(row), "call_attempt.digit", actor, at)]


async def finish_from_call(
    conn: Conn, action_id: str, disposition: Disposition, at: dt.datetime, actor: str
) -> list[DomainEvent]:
    """A callback's call has ended: its result is whether the resident answered."""
    result = _FROM_DISPOSITION[disposition]
    return await _finish(
        conn,
        action_id,
        result,
        None,
        f"the call ended: {disposition.value}",
        at,
        actor,
        extra="AND operator IS NOT NULL",
    )


async def link_call(conn: Conn, action_id: str, call_id: int) -> None:
    await conn.execute(
        "UPDATE call_attempts SET call_id = $2 WHERE action_id = $1 AND call_id IS NULL", action_id, call_id
    )


async def expire_attempt(conn: Conn, deadline: Deadline, now: dt.datetime) -> list[DomainEvent]:
    """The timeout deadline: Asterisk never said how the attempt went (no Response, no OriginateResponse)."""
    row = await conn.fetchrow("SELECT action_id, state FROM call_attempts WHERE id = $1", deadline.subject_id)
    if row is None:
        return []
    reason = (
        "timeout: Asterisk never answered the Originate"
        if row["state"] == AttemptState.PENDING.value
        else "timeout: Asterisk never reported how the call went"
    )
    return await _finish(
        conn,
        row["action_id"],
        AttemptResult.FAILED,
        None,
        reason,
        now,
        "system:call-timeout",
        extra="AND reason_code IS NULL",
    )


def register_call_attempts(handlers: DeadlineHandlers) -> None:
    handlers.register(TIMEOUT_KIND, expire_attempt)


# -- placing ------------------------------------------------------------------------------------


class Dialer(Protocol):
    """One Asterisk server as the originator sees it."""

    config: AsteriskConfig

    @property
    def up(self) -> bool: ...

    def originate(self, fields: dict[str, Any]) -> None:
        """Send the Originate; raises when the link is down. Its answers reach the server's recorder."""
        ...


@dataclass(frozen=True)
class Dial:
    """Where the Originate goes: the channel rung first, and where it continues once answered."""

    channel: str
    context: str
    exten: str


def digits_for_dialling(book: PhoneBook, e164: str) -> str:
    """The national form a CN trunk is dialled with: 13800138000, 04716912345."""
    return "".join(ch for ch in book.national(e164) if ch.isdigit())


class Originator:
    """Places calls on whichever Asterisk link is up (or the one named) and records them."""

    def __init__(self, runtime: Runtime, dialers: Mapping[str, Dialer]) -> None:
        self.runtime = runtime
        self.dialers = dict(dialers)
        self.book = runtime.phones

    def _choose(self, server: str | None) -> tuple[str, Dialer | None]:
        if server is not None:
            if server not in self.dialers:
                raise NotFound(f"no Asterisk server named {server!r}")
            dialer = self.dialers[server]
            return server, dialer if dialer.up else None
        for name, dialer in self.dialers.items():
            if dialer.up:
                return name, dialer
        return (next(iter(self.dialers)) if self.dialers else "none"), None

    def _dial(self, config: AsteriskConfig, purpose: Purpose, target: str, operator: str | None) -> Dial:
        number = digits_for_dialling(self.book, target)
        if operator is not None:
            return Dial(config.operator_channel.format(extension=operator), config.outbound_context, number)
        context = {
            Purpose.CARE_CALL: config.care_context,
            Purpose.RATING: config.rating_context,
            Purpose.FAMILY: config.family_context,
            Purpose.CALLBACK: config.outbound_context,
        }[purpose]
        return Dial(f"Local/{number}@{config.outbound_context}", context, "s")

    async def place(
        self,
        *,
        purpose: Purpose,
        target: str,
        requested_by: str,
        operator: str | None = None,
        resident_id: int | None = None,
        alert_id: int | None = None,
        contact_id: int | None = None,
        subject_type: str | None = None,
        subject_id: int | None = None,
        context_id: uuid.UUID | None = None,
        server: str | None = None,
    ) -> CallAttempt:
        """Write the attempt, then send the Originate. TelephonyUnavailable (the failed attempt
        written) when no link is up."""
        try:
            target = self.book.normalise(target)
        except PhoneNumberError as exc:
            raise NoNumber(str(exc)) from None
        name, dialer = self._choose(server)
        now = self.runtime.clock()
        ring = dialer.config.originate_ring_seconds if dialer else 0.0
        timeout_at = now + dt.timedelta(seconds=ring + REPORT_GRACE_SECONDS)
        events: list[DomainEvent] = []
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            attempt_id = int(await conn.fetchval("SELECT nextval('call_attempts_id_seq')"))
            action_id = f"{_ACTION_PREFIX[purpose]}-{attempt_id:04d}"
            row = await conn.fetchrow(
                f"""INSERT INTO call_attempts (id, purpose, server, action_id, target, resident_id, alert_id,
                        contact_id, operator, subject_type, subject_id, requested_by, context_id, created_at,
                        timeout_at, state, result, reason, finished_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                            CASE WHEN $16::bool THEN 'pending' ELSE 'finished' END,
                            CASE WHEN $16::bool THEN NULL ELSE 'failed' END,
                            CASE WHEN $16::bool THEN '' ELSE 'no Asterisk link was up' END,
                            CASE WHEN $16::bool THEN NULL ELSE $14::timestamptz END)
                    RETURNING {COLUMNS}""",
                attempt_id,
                purpose.value,
                name,
                action_id,
                target,
                resident_id,
                alert_id,
                contact_id,
                operator,
                subject_type,
                subject_id,
                requested_by,
                context_id or uuid.uuid4(),
                now,
                timeout_at,
                dialer is not None,
            )
            assert row is not None
            attempt = CallAttempt.from_row(row)
            kind = "call_attempt.placed" if dialer else "call_attempt.finished"
            events.append(await _attempt_event(conn, attempt, kind, requested_by, now))
            if dialer is not None:
                await schedule_deadline(
                    conn,
                    kind=TIMEOUT_KIND,
                    subject_type="call_attempt",
                    subject_id=attempt_id,
                    due_at=timeout_at,
                )
        await self.runtime.bus.publish(*events)
        if dialer is None:
            raise TelephonyUnavailable(attempt)
        dial = self._dial(dialer.config, purpose, target, operator)
        dialer.originate(
            {
                "Action": "Originate",
                "ActionID": action_id,
                "Channel": dial.channel,
                "Context": dial.context,
                "Exten": dial.exten,
                "Priority": "1",
                "CallerID": f'"{dialer.config.caller_id}" <{dialer.config.caller_id}>',
                "Timeout": str(int(ring * 1000)),
                "Async": "true",
                "Variable": [f"{_VARIABLE[purpose]}={action_id}"],
            }
        )
        log.info("call attempt %s (%s) sent to %s", action_id, purpose.value, name)
        return attempt


# -- what the console and the service lane call ---------------------------------------------------


async def _resident_phone(conn: Conn, resident_id: int) -> str:
    if not await conn.fetchval("SELECT 1 FROM residents WHERE id = $1", resident_id):
        raise NotFound(f"no resident {resident_id}")
    phone = await conn.fetchval(
        "SELECT e164 FROM resident_phones WHERE resident_id = $1 ORDER BY position, kind = 'landline', e164",
        resident_id,
    )
    if phone is None:
        raise NoNumber(f"resident {resident_id} has no phone on record")
    return str(phone)


async def place_care_call(
    originator: Originator,
    *,
    resident_id: int,
    purpose: Purpose = Purpose.CARE_CALL,
    number: str | None = None,
    subject_type: str | None = None,
    subject_id: int | None = None,
    requested_by: str = "system:care",
    context_id: uuid.UUID | None = None,
    server: str | None = None,
    alert_id: int | None = None,
) -> CallAttempt:
    """A care call (关爱电话) or a rating call (回访) into the IVR, which reports the digit pressed.

    The result arrives later as `call_attempt.finished` and `call_attempt.digit` events
    (subject `call_attempt`, data `subject_type`/`subject_id` as given here).
    """
    if purpose not in (Purpose.CARE_CALL, Purpose.RATING):
        raise CallError(f"place_care_call places care and rating calls, not {purpose.value}")
    async with originator.runtime.pool.acquire() as conn:
        target = number or await _resident_phone(conn, resident_id)
    return await originator.place(
        purpose=purpose,
        target=target,
        requested_by=requested_by,
        resident_id=resident_id,
        subject_type=subject_type,
        subject_id=subject_id,
        context_id=context_id,
        server=server,
        alert_id=alert_id,
    )


async def place_callback(
    originator: Originator,
    *,
    operator: str,
    requested_by: str,
    resident_id: int | None = None,
    number: str | None = None,
    server: str | None = None,
) -> CallAttempt:
    """Ring the operator's extension, then the resident (or the number), showing the hotline number."""
    if resident_id is not None and number is None:
        async with originator.runtime.pool.acquire() as conn:
            number = await _resident_phone(conn, resident_id)
    if number is None:
        raise NoNumber("give a resident or a number to call back")
    return await originator.place(
        purpose=Purpose.CALLBACK,
        target=number,
        operator=operator,
        requested_by=requested_by,
        resident_id=resident_id,
        server=server,
    )


async def place_family_call(
    originator: Originator,
    *,
    alert_id: int,
    position: int,
    requested_by: str,
    operator: str | None = None,
    server: str | None = None,
) -> CallAttempt:
    """Call an alert's resident's emergency contact (by position): through the operator's phone
    when one is given, else into the family context (which puts the answered call in the queue)."""
    async with originator.runtime.pool.acquire() as conn:
        alert = await conn.fetchrow("SELECT resident_id, context_id FROM alerts WHERE id = $1", alert_id)
        if alert is None:
            raise NotFound(f"no alert {alert_id}")
        if alert["resident_id"] is None:
            raise NoNumber(f"alert {alert_id} has no known resident, so no family to call")
        contact = await conn.fetchrow(
            "SELECT id, phone_e164 FROM emergency_contacts WHERE resident_id = $1 AND position = $2",
            alert["resident_id"],
            position,
        )
    if contact is None:
        raise NotFound(f"the resident of alert {alert_id} has no emergency contact {position}")
    return await originator.place(
        purpose=Purpose.FAMILY,
        target=contact["phone_e164"],
        operator=operator,
        requested_by=requested_by,
        resident_id=alert["resident_id"],
        alert_id=alert_id,
        contact_id=contact["id"],
        context_id=alert["context_id"],
        server=server,
    )
