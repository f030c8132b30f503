"""Jobs sent by SMS, their reply codes, the handlers lanes register, and reply routing.

A job is one thing one party (an emergency team, a provider) was asked to do
by SMS: an emergency dispatch, a service offer. It has a short code (4821)
that is unique among open jobs, so a reply "1 4821" names it. The lanes
(alerts, orders) open and close jobs in their own transactions and register
a handler per job kind at start-up:

    JobHandlers.register("order_offer", handle_offer_reply, details=offer_page_details)

`route_reply` takes one inbound SMS from the webhook (or the development
outbox) through: store it → who sent it → parse → which job → the handler →
the answer SMS, all in one transaction, and publishes the events after the
commit. The job page (`providers.job_page`) calls the same handler.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

import asyncpg

from dispatch.database import Conn
from dispatch.events import DomainEvent, append_event
from dispatch.notices import Severity, raise_notice
from dispatch.runtime import Runtime
from providers import templates
from providers.outbox import SmsPurpose, queue_sms
from providers.replies import ACTION_WORDS, Reply, ReplyAction, ReplyError, parse_reply

log = logging.getLogger(__name__)


class PartyType(StrEnum):
    TEAM = "team"
    PROVIDER = "provider"


@dataclass(frozen=True)
class Job:
    id: int
    code: str
    kind: str
    subject_type: str
    subject_id: int
    party_type: PartyType
    party_id: int
    open: bool
    context_id: uuid.UUID | None
    created_at: dt.datetime
    expires_at: dt.datetime
    closed_at: dt.datetime | None
    close_reason: str | None


_JOB_COLUMNS = """id, code, kind, subject_type, subject_id, party_type, party_id, open, context_id,
                  created_at, expires_at, closed_at, close_reason"""


def _job(row: asyncpg.Record) -> Job:
    values = dict(row.items())
    values["party_type"] = PartyType(values["party_type"])
    return Job(**values)


@dataclass(frozen=True)
class JobOutcome:
    """What a handler did with a reply: the answer for the party, and events to publish after commit."""

    text_zh: str
    text_en: str
    ok: bool
    events: tuple[DomainEvent, ...] = ()

    def text(self, language: str) -> str:
        return self.text_en if templates.is_english(language) else self.text_zh


@dataclass(frozen=True)
class JobDetails:
    """What the job page shows: a title, label/value lines, a map link, and the buttons offered."""

    title: str
    lines: list[tuple[str, str]]
    map_link: str | None = None
    actions: tuple[ReplyAction, ...] = tuple(ReplyAction)


JobHandler = Callable[[Conn, Job, ReplyAction, str], Awaitable[JobOutcome]]
JobDetailsFn = Callable[[Conn, Job], Awaitable[JobDetails]]


class NoJobHandler(LookupError):
    """No handler is registered for a job's kind."""


class JobHandlers:
    """Which function answers replies to each kind of job, and what its page shows.

    Kinds are code-level names ('alert_dispatch', 'order_offer'); registering a
    kind again replaces its handler (a lane registers at every start-up).
    """

    _handlers: ClassVar[dict[str, JobHandler]] = {}
    _details: ClassVar[dict[str, JobDetailsFn]] = {}

    @classmethod
    def register(cls, kind: str, handler: JobHandler, *, details: JobDetailsFn | None = None) -> None:
        cls._handlers[kind] = handler
        if details is not None:
            cls._details[kind] = details
        else:
            cls._details.pop(kind, None)

    @classmethod
    def unregister(cls, kind: str) -> None:
        cls._handlers.pop(kind, None)
        cls._details.pop(kind, None)

    @classmethod
    def handler(cls, kind: str) -> JobHandler:
        try:
            return cls._handlers[kind]
        except KeyError:
            raise NoJobHandler(f"no handler for job kind {kind!r}") from None

    @classmethod
    def details(cls, kind: str) -> JobDetailsFn | None:
        return cls._details.get(kind)

    @classmethod
    def kinds(cls) -> list[str]:
        return sorted(cls._handlers)


class JobCodeError(RuntimeError):
    """No free job code could be found (more than ninety million open jobs)."""


# Four digits are easy to read and type for older staff; a fifth comes only when most are taken.
JOB_CODE_DIGITS = 4
_TRIES_PER_WIDTH = 12
MAX_CODE_DIGITS = 8


async def open_job(
    conn: Conn,
    *,
    kind: str,
    subject_type: str,
    subject_id: int,
    party_type: PartyType | str,
    party_id: int,
    expires_at: dt.datetime,
    context_id: uuid.UUID | None = None,
    digits: int = JOB_CODE_DIGITS,
    now: dt.datetime | None = None,
    rng: random.Random | None = None,
) -> Job:
    """Open a job for one party (in the caller's transaction) with a free code.

    Codes are random, `digits` long, never starting with 0; when a dozen draws
    in a row are taken, one more digit is used. A code still held by an
    expired job is taken back for the new one.
    """
    party = PartyType(party_type)
    pick = rng or random.SystemRandom()
    at = now or dt.datetime.now(dt.UTC)
    for width in range(digits, MAX_CODE_DIGITS + 1):
        for _ in range(_TRIES_PER_WIDTH):
            code = str(pick.randrange(10 ** (width - 1), 10**width))
            await conn.execute(
                """UPDATE sms_jobs SET open = false, closed_at = $2, close_reason = 'expired'
                   WHERE open AND code = $1 AND expires_at <= $2""",
                code,
                at,
            )
            row = await conn.fetchrow(
                f"""INSERT INTO sms_jobs (code, kind, subject_type, subject_id, party_type, party_id,
                                          context_id, expires_at, created_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                    ON CONFLICT (code) WHERE open DO NOTHING
                    RETURNING {_JOB_COLUMNS}""",
                code,
                kind,
                subject_type,
                subject_id,
                party.value,
                party_id,
                context_id,
                expires_at,
                at,
            )
            if row is not None:
                return _job(row)
    raise JobCodeError("no free job code")


async def get_job(conn: Conn, job_id: int, *, for_update: bool = False) -> Job | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT {_JOB_COLUMNS} FROM sms_jobs WHERE id = $1{lock}", job_id)
    return _job(row) if row else None


async def close_job(
    conn: Conn, job_id: int, *, reason: str = "", at: dt.datetime | None = None
) -> Job | None:
    """Close one job; None when it was already closed (or does not exist)."""
    row = await conn.fetchrow(
        f"""UPDATE sms_jobs SET open = false, closed_at = $2, close_reason = $3
            WHERE id = $1 AND open RETURNING {_JOB_COLUMNS}""",
        job_id,
        at or dt.datetime.now(dt.UTC),
        reason or None,
    )
    return _job(row) if row else None


async def close_jobs(
    conn: Conn,
    *,
    subject_type: str,
    subject_id: int,
    reason: str = "",
    except_job_id: int | None = None,
    at: dt.datetime | None = None,
) -> list[Job]:
    """Close every open job about a subject (all but `except_job_id`); the jobs closed, e.g. to
    tell the other providers of a first-accept-wins offer that it is gone."""
    rows = await conn.fetch(
        f"""UPDATE sms_jobs SET open = false, closed_at = $3, close_reason = $4
            WHERE open AND subject_type = $1 AND subject_id = $2 AND id IS DISTINCT FROM $5
            RETURNING {_JOB_COLUMNS}""",
        subject_type,
        subject_id,
        at or dt.datetime.now(dt.UTC),
        reason or None,
        except_job_id,
    )
    return sorted((_job(r) for r in rows), key=lambda j: j.id)


async def close_expired_jobs(conn: Conn, now: dt.datetime) -> list[Job]:
    """Close jobs past their deadline (for a scheduler; replies already ignore them)."""
    rows = await conn.fetch(
        f"""UPDATE sms_jobs SET open = false, closed_at = $1, close_reason = 'expired'
            WHERE open AND expires_at <= $1 RETURNING {_JOB_COLUMNS}""",
        now,
    )
    return [_job(r) for r in rows]


async def open_jobs_for(
    conn: Conn, party_type: PartyType | str, party_id: int, *, now: dt.datetime | None = None
) -> list[Job]:
    """A party's open jobs that have not expired, oldest first."""
    rows = await conn.fetch(
        f"""SELECT {_JOB_COLUMNS} FROM sms_jobs
            WHERE open AND party_type = $1 AND party_id = $2 AND expires_at > $3
            ORDER BY created_at, id""",
        PartyType(party_type).value,
        party_id,
        now or dt.datetime.now(dt.UTC),
    )
    return [_job(r) for r in rows]


async def jobs_for_subject(
    conn: Conn, subject_type: str, subject_id: int, *, open_only: bool = True
) -> list[Job]:
    rows = await conn.fetch(
        f"""SELECT {_JOB_COLUMNS} FROM sms_jobs
            WHERE subject_type = $1 AND subject_id = $2 AND (open OR NOT $3) ORDER BY id""",
        subject_type,
        subject_id,
        open_only,
    )
    return [_job(r) for r in rows]


async def act_on_job(conn: Conn, job: Job, action: ReplyAction, actor: str) -> JobOutcome:
    """Run the kind's handler in the caller's transaction (SMS reply and job page alike)."""
    handler = JobHandlers.handler(job.kind)
    return await handler(conn, job, action, actor)


# -- who is texting ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Party:
    """One identity behind a phone number: a provider, or a team (through a member or its own phone)."""

    type: PartyType
    id: int
    name: str
    member_id: int | None = None

    @property
    def actor(self) -> str:
        base = f"{self.type.value}:{self.id}"
        return f"{base}:member:{self.member_id}" if self.member_id is not None else base


PARTIES_FOR_PHONE = """
SELECT 'team' AS type, t.id, t.name, m.id AS member_id
FROM team_members m JOIN emergency_teams t ON t.id = m.team_id
WHERE m.phone_e164 = $1
UNION ALL
SELECT 'team', t.id, t.name, NULL FROM emergency_teams t
WHERE t.phone_e164 = $1
  AND NOT EXISTS (SELECT 1 FROM team_members m WHERE m.team_id = t.id AND m.phone_e164 = $1)
UNION ALL
SELECT 'provider', p.id, p.name, NULL FROM providers p WHERE p.sms_e164 = $1
ORDER BY 1, 2
"""


async def parties_for_phone(conn: Conn, e164: str) -> list[Party]:
    rows = await conn.fetch(PARTIES_FOR_PHONE, e164)
    return [Party(PartyType(r["type"]), r["id"], r["name"], r["member_id"]) for r in rows]


async def _open_jobs_of(conn: Conn, parties: Sequence[Party], now: dt.datetime) -> list[Job]:
    rows = await conn.fetch(
        f"""SELECT {_JOB_COLUMNS} FROM sms_jobs
            WHERE open AND expires_at > $3
              AND (party_type, party_id) IN (SELECT * FROM unnest($1::text[], $2::bigint[]))
            ORDER BY created_at, id""",
        [p.type.value for p in parties],
        [p.id for p in parties],
        now,
    )
    return [_job(r) for r in rows]


# -- routing one reply ------------------------------------------------------------------------


class RouteOutcome(StrEnum):
    ACTED = "acted"  # the handler ran (its answer says whether the action was allowed)
    DUPLICATE = "duplicate"  # the same MessageSid again: nothing done
    UNKNOWN_SENDER = "unknown_sender"  # stored, flagged, an operator told; no answer sent
    UNPARSED = "unparsed"  # not in the grammar: help sent, an operator told
    AMBIGUOUS = "ambiguous"  # no code and several open jobs: asked which
    NO_JOB = "no_job"  # the code is not an open job of this sender, or there is none
    HANDLER_FAILED = "handler_failed"  # no handler, or it raised: an operator told


@dataclass(frozen=True)
class RouteResult:
    message_id: int
    outcome: RouteOutcome
    job_id: int | None = None
    action: ReplyAction | None = None
    reply_ids: tuple[int, ...] = ()
    events: tuple[DomainEvent, ...] = field(default=(), repr=False)


INSERT_INBOUND = """
INSERT INTO sms_messages (direction, to_e164, from_e164, body, segments, status, purpose, language,
                          provider_sid, created_at, updated_at)
VALUES ('in', $1, $2, $3, $4, 'received', 'reply', $5, $6, $7, $7)
ON CONFLICT (provider_sid) DO NOTHING
RETURNING id
"""


async def route_reply(
    runtime: Runtime,
    *,
    from_raw: str,
    body: str,
    to_raw: str = "",
    provider_sid: str | None = None,
    received_at: dt.datetime | None = None,
) -> RouteResult:
    """Store one inbound SMS and act on it, in one transaction; publish its events after the commit.

    A `provider_sid` seen before is a provider retry: the earlier result is
    reported and nothing is done again.
    """
    now = received_at or runtime.clock()
    sender = runtime.phones.try_normalise(from_raw)
    recipient = runtime.phones.try_normalise(to_raw) or to_raw[:32]
    language = runtime.config.locale.language
    text = body[:1600]
    async with runtime.pool.acquire() as conn, conn.transaction():
        message_id = await conn.fetchval(
            INSERT_INBOUND,
            recipient,
            sender or from_raw[:32],
            text,
            templates.segments(text) if text else 1,
            language,
            provider_sid,
            now,
        )
        if message_id is None:
            row = await conn.fetchrow(
                "SELECT id, outcome, job_id FROM sms_messages WHERE provider_sid = $1", provider_sid
            )
            assert row is not None
            return RouteResult(row["id"], RouteOutcome.DUPLICATE, job_id=row["job_id"])
        router = _Router(runtime, conn, message_id, sender, text, language, now)
        result = await router.route()
    await runtime.bus.publish(*result.events)
    return result


class _Router:
    """The steps of one inbound message, sharing its connection and what is known so far."""

    def __init__(
        self,
        runtime: Runtime,
        conn: Conn,
        message_id: int,
        sender: str | None,
        text: str,
        language: str,
        now: dt.datetime,
    ) -> None:
        self.runtime, self.conn, self.message_id = runtime, conn, message_id
        self.sender, self.text, self.language, self.now = sender, text, language, now
        self.events: list[DomainEvent] = []
        self.replies: list[int] = []

    async def route(self) -> RouteResult:
        parties = await parties_for_phone(self.conn, self.sender) if self.sender else []
        if not parties:
            return await self._unknown_sender()
        actor = parties[0].actor
        try:
            reply = parse_reply(self.text)
        except ReplyError as exc:
            return await self._unparsed(parties, exc)
        jobs = await _open_jobs_of(self.conn, parties, self.now)
        chosen = jobs if reply.code is None else [j for j in jobs if j.code == reply.code]
        if not chosen:
            await self._answer(templates.no_open_job(code=reply.code, language=self.language), None)
            return await self._finish(RouteOutcome.NO_JOB, actor, reply=reply)
        if len(chosen) > 1:
            return await self._ambiguous(parties, reply, chosen, actor)
        job = chosen[0]
        # the party that owns the job is the one acting (a phone may be in several teams)
        owner = next((p for p in parties if (p.type, p.id) == (job.party_type, job.party_id)), parties[0])
        return await self._act(job, reply, owner.actor)

    async def _act(self, job: Job, reply: Reply, actor: str) -> RouteResult:
        locked = await get_job(self.conn, job.id, for_update=True)
        if locked is None or not locked.open:
            # closed by someone else between the lookup and the lock
            await self._answer(templates.no_open_job(code=job.code, language=self.language), job)
            return await self._finish(RouteOutcome.NO_JOB, actor, reply=reply, job=job)
        try:
            async with self.conn.transaction():  # a savepoint: a failing handler leaves the message stored
                outcome = await act_on_job(self.conn, locked, reply.action, actor)
        except NoJobHandler:
            log.error("SMS #%d: no handler for job kind %s", self.message_id, locked.kind)
            return await self._handler_failed(locked, reply, actor, "no handler for this kind of job")
        except Exception as exc:
            # A lane's handler is a plug-in: whatever it raises, the reply stays stored (its savepoint
            # is rolled back) and an operator takes over, instead of Twilio retrying into the same bug.
            log.exception("SMS #%d: the %s handler failed", self.message_id, locked.kind)
            return await self._handler_failed(locked, reply, actor, type(exc).__name__)
        self.events.extend(outcome.events)
        await self._answer(outcome.text(self.language), locked, purpose=SmsPurpose.REPLY_ACK)
        return await self._finish(RouteOutcome.ACTED, actor, reply=reply, job=locked, ok=outcome.ok)

    async def _unknown_sender(self) -> RouteResult:
        await self.conn.execute(
            "UPDATE sms_messages SET flagged = true, flag_reason = 'unknown_sender' WHERE id = $1",
            self.message_id,
        )
        self.events.append(
            await raise_notice(
                self.conn,
                kind="sms.unknown_sender",
                severity=Severity.WARNING,
                text=f"陌生号码发来短信（#{self.message_id}），未处理：“{self.text[:120]}”",
                subject_type="sms",
                subject_id=self.message_id,
                data={"sms_id": self.message_id},
                at=self.now,
            )
        )
        return await self._finish(RouteOutcome.UNKNOWN_SENDER, "unknown")

    async def _unparsed(self, parties: Sequence[Party], exc: ReplyError) -> RouteResult:
        await self.conn.execute(
            "UPDATE sms_messages SET flagged = true, flag_reason = 'unparsed' WHERE id = $1", self.message_id
        )
        names = "、".join(p.name for p in parties)
        self.events.append(
            await raise_notice(
                self.conn,
                kind="sms.unparsed_reply",
                severity=Severity.WARNING,
                text=f"{names} 的短信无法识别（#{self.message_id}）：“{self.text[:120]}”",
                subject_type="sms",
                subject_id=self.message_id,
                data={"sms_id": self.message_id, "reason": exc.reason},
                at=self.now,
            )
        )
        await self._answer(templates.unknown_reply(language=self.language), None, limited=True)
        return await self._finish(RouteOutcome.UNPARSED, parties[0].actor, reason=exc.reason)

    async def _ambiguous(
        self, parties: Sequence[Party], reply: Reply, jobs: Sequence[Job], actor: str
    ) -> RouteResult:
        codes = [j.code for j in jobs]
        digit = ACTION_WORDS[reply.action][0]
        self.events.append(
            await raise_notice(
                self.conn,
                kind="sms.ambiguous_reply",
                severity=Severity.INFO,
                text=f"{parties[0].name} 回复“{self.text[:40]}”未带工单号，但有 {len(jobs)} 个进行中的工单"
                f"（{'、'.join(codes)}），已请其带上工单号",
                subject_type="sms",
                subject_id=self.message_id,
                data={"sms_id": self.message_id, "job_ids": [j.id for j in jobs]},
                at=self.now,
            )
        )
        await self._answer(
            templates.ambiguous_reply(codes=codes, action_digit=digit, language=self.language), None
        )
        return await self._finish(RouteOutcome.AMBIGUOUS, actor, reply=reply)

    async def _handler_failed(self, job: Job, reply: Reply, actor: str, why: str) -> RouteResult:
        self.events.append(
            await raise_notice(
                self.conn,
                kind="sms.handler_failed",
                severity=Severity.CRITICAL,
                text=f"工单{job.code}的回复（#{self.message_id}，{reply.action.value}）未能自动处理：{why}。请人工处理",
                subject_type=job.subject_type,
                subject_id=job.subject_id,
                context_id=job.context_id,
                data={"sms_id": self.message_id, "job_id": job.id},
                at=self.now,
            )
        )
        return await self._finish(RouteOutcome.HANDLER_FAILED, actor, reply=reply, job=job)

    async def _answer(
        self, text: str, job: Job | None, *, purpose: SmsPurpose = SmsPurpose.HELP, limited: bool = False
    ) -> None:
        assert self.sender is not None
        if limited and not await self._may_send_help():
            log.info("SMS #%d: help not sent (hourly limit for this number)", self.message_id)
            return
        reply_id = await queue_sms(
            self.conn,
            self.sender,
            text,
            purpose=purpose,
            idempotency_key=f"reply:{self.message_id}",
            context_id=job.context_id if job else None,
            subject_type=job.subject_type if job else "sms",
            subject_id=job.subject_id if job else self.message_id,
            language=self.language,
        )
        self.replies.append(reply_id)

    async def _may_send_help(self) -> bool:
        sent: int = await self.conn.fetchval(
            """SELECT count(*) FROM sms_messages
               WHERE direction = 'out' AND to_e164 = $1 AND purpose = 'help'
                 AND created_at > $2::timestamptz - interval '1 hour'""",
            self.sender,
            self.now,
        )
        return sent < self.runtime.config.sms.help_replies_per_hour

    async def _finish(
        self,
        outcome: RouteOutcome,
        actor: str,
        *,
        reply: Reply | None = None,
        job: Job | None = None,
        ok: bool | None = None,
        reason: str | None = None,
    ) -> RouteResult:
        await self.conn.execute(
            """UPDATE sms_messages SET outcome = $2, job_id = $3, subject_type = $4, subject_id = $5,
                   context_id = $6, updated_at = $7
               WHERE id = $1""",
            self.message_id,
            outcome.value,
            job.id if job else None,
            job.subject_type if job else None,
            job.subject_id if job else None,
            job.context_id if job else None,
            self.now,
        )
        data: dict[str, object] = {"outcome": outcome.value}
        if reply is not None:
            data.update(action=reply.action.value, code=reply.code)
        if job is not None:
            data.update(job_id=job.id, job_kind=job.kind, about=[job.subject_type, job.subject_id])
        if ok is not None:
            data["ok"] = ok
        if reason is not None:
            data["reason"] = reason
        received = await append_event(
            self.conn,
            subject_type="sms",
            subject_id=self.message_id,
            kind="sms.received",
            actor=actor,
            context_id=job.context_id if job else None,
            data=data,
            at=self.now,
        )
        return RouteResult(
            self.message_id,
            outcome,
            job_id=job.id if job else None,
            action=reply.action if reply else None,
            reply_ids=tuple(self.replies),
            events=(received, *self.events),
        )
