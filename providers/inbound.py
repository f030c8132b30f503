"""One inbound SMS, from the webhook or the development outbox, taken all the way through.

`route_reply`: store it → who sent it (a team member, a team, a provider:
`team_members.phone_e164`, `emergency_teams.phone_e164`, `providers.sms_e164`)
→ parse (`providers.replies`) → which open job (by code, or the sender's only
one) → the job kind's handler (`providers.jobs.JobHandlers`) → the answer SMS,
all in one transaction; the events are published after the commit.

An unknown sender is stored, flagged and shown to an operator, never acted on
and never answered. A reply that cannot be read gets the grammar back (a few
times an hour at most, so an auto-responder cannot start a loop) and an
operator notice, since free text from a provider may matter ("老人不在家").
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from dispatch.database import Conn
from dispatch.events import DomainEvent, append_event
from dispatch.notices import Severity, raise_notice
from dispatch.runtime import Runtime
from providers import templates
from providers.jobs import JOB_COLUMNS, Job, NoJobHandler, PartyType, act_on_job, get_job, job_from_row
from providers.outbox import SmsPurpose, queue_sms
from providers.replies import ACTION_WORDS, Reply, ReplyAction, ReplyError, parse_reply

log = logging.getLogger(__name__)


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
        f"""SELECT {JOB_COLUMNS} FROM sms_jobs
            WHERE open AND expires_at > $3
              AND (party_type, party_id) IN (SELECT * FROM unnest($1::text[], $2::bigint[]))
            ORDER BY created_at, id""",
        [p.type.value for p in parties],
        [p.id for p in parties],
        now,
    )
    return [job_from_row(r) for r in rows]


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
        await self._answer(templates.unknown_reply(language=self.language), None)
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

    async def _answer(self, text: str, job: Job | None, *, purpose: SmsPurpose = SmsPurpose.HELP) -> None:
        assert self.sender is not None
        # help texts are limited per number and hour; the answer to an action is not
        if purpose is SmsPurpose.HELP and not await self._may_send_help():
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
