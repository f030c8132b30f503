"""Jobs sent by SMS, their reply codes, and the handlers the lanes register for them.

A job is one thing one party (an emergency team, a provider) was asked to do
by SMS: an emergency dispatch, a service offer. It has a short code (4821)
that is unique among open jobs, so a reply "1 4821" names it. The lanes
(alerts, orders) open and close jobs in their own transactions and register
a handler per job kind at start-up:

    JobHandlers.register("order_offer", handle_offer_reply, details=offer_page_details)

A handler runs inside the transaction of the inbound reply (or of the job
page's POST) with the job row locked, and returns a `JobOutcome`: the answer
for the party in both languages and the events to publish after the commit.
Replies are routed to it by `providers.inbound.route_reply`; the job page
(`providers.job_page`) calls the same handler through `act_on_job`.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

import asyncpg

from dispatch.database import Conn
from dispatch.events import DomainEvent
from providers import templates
from providers.replies import ReplyAction


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


JOB_COLUMNS = """id, code, kind, subject_type, subject_id, party_type, party_id, open, context_id,
                  created_at, expires_at, closed_at, close_reason"""


def job_from_row(row: asyncpg.Record) -> Job:
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
                    RETURNING {JOB_COLUMNS}""",
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
                return job_from_row(row)
    raise JobCodeError("no free job code")


async def get_job(conn: Conn, job_id: int, *, for_update: bool = False) -> Job | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT {JOB_COLUMNS} FROM sms_jobs WHERE id = $1{lock}", job_id)
    return job_from_row(row) if row else None


async def close_job(
    conn: Conn, job_id: int, *, reason: str = "", at: dt.datetime | None = None
) -> Job | None:
    """Close one job; None when it was already closed (or does not exist)."""
    row = await conn.fetchrow(
        f"""UPDATE sms_jobs SET open = false, closed_at = $2, close_reason = $3
            WHERE id = $1 AND open RETURNING {JOB_COLUMNS}""",
        job_id,
        at or dt.datetime.now(dt.UTC),
        reason or None,
    )
    return job_from_row(row) if row else None


async def close_jobs(
    conn: Conn,
    *,
    subject_type: str,
    subject_id: int,
    reason: str = "",
    except_job_id: int | None = None,
    at: dt.datetime | None = None,
    skip_locked: bool = False,
) -> list[Job]:
    """Close every open job about a subject (all but `except_job_id`); the jobs closed, e.g. to
    tell the other providers of a first-accept-wins offer that it is gone.

    `skip_locked` leaves alone a job an in-flight reply holds: the caller holds the subject's
    lock and the reply waits for it, so waiting for the job here would deadlock. That reply
    then finds its subject moved on and closes its own job."""
    rows = await conn.fetch(
        f"""UPDATE sms_jobs SET open = false, closed_at = $3, close_reason = $4
            WHERE id IN (
                SELECT id FROM sms_jobs
                WHERE open AND subject_type = $1 AND subject_id = $2 AND id IS DISTINCT FROM $5
                FOR UPDATE {"SKIP LOCKED" if skip_locked else ""})
            RETURNING {JOB_COLUMNS}""",
        subject_type,
        subject_id,
        at or dt.datetime.now(dt.UTC),
        reason or None,
        except_job_id,
    )
    return sorted((job_from_row(r) for r in rows), key=lambda j: j.id)


async def close_expired_jobs(conn: Conn, now: dt.datetime) -> list[Job]:
    """Close jobs past their deadline (for a scheduler; replies already ignore them)."""
    rows = await conn.fetch(
        f"""UPDATE sms_jobs SET open = false, closed_at = $1, close_reason = 'expired'
            WHERE open AND expires_at <= $1 RETURNING {JOB_COLUMNS}""",
        now,
    )
    return [job_from_row(r) for r in rows]


async def open_jobs_for(
    conn: Conn, party_type: PartyType | str, party_id: int, *, now: dt.datetime | None = None
) -> list[Job]:
    """A party's open jobs that have not expired, oldest first."""
    rows = await conn.fetch(
        f"""SELECT {JOB_COLUMNS} FROM sms_jobs
            WHERE open AND party_type = $1 AND party_id = $2 AND expires_at > $3
            ORDER BY created_at, id""",
        PartyType(party_type).value,
        party_id,
        now or dt.datetime.now(dt.UTC),
    )
    return [job_from_row(r) for r in rows]


async def jobs_for_subject(
    conn: Conn, subject_type: str, subject_id: int, *, open_only: bool = True
) -> list[Job]:
    rows = await conn.fetch(
        f"""SELECT {JOB_COLUMNS} FROM sms_jobs
            WHERE subject_type = $1 AND subject_id = $2 AND (open OR NOT $3) ORDER BY id""",
        subject_type,
        subject_id,
        open_only,
    )
    return [job_from_row(r) for r in rows]


async def act_on_job(conn: Conn, job: Job, action: ReplyAction, actor: str) -> JobOutcome:
    """Run the kind's handler in the caller's transaction (SMS reply and job page alike)."""
    handler = JobHandlers.handler(job.kind)
    return await handler(conn, job, action, actor)
