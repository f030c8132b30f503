"""Offers of an order to providers: the offer row, its SMS job and deadline, its answer.

The `order_offers` row is the truth about an offer and is only written under
the order's row lock; the provider's SMS job follows it. Jobs are closed with
one of the close reasons the whole lane shares (acceptance rates are computed
from them): 'accepted', 'declined', 'expired', 'cancelled', 'taken_by_other'.
A job whose offer was accepted keeps 'accepted' whenever it closes (done, the
order cancelled or taken back): that was the provider's answer.

A reply being handled holds its job's row lock and then waits for the order's.
So whoever holds the order's lock and closes other offers' jobs takes only
the jobs nobody else holds (`SKIP LOCKED`); the reply in flight finds its offer
already decided once it gets the order, closes its own job and says so. Taking
the locks the other way round would deadlock two providers racing to accept.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import asyncpg

from dispatch.database import Conn
from dispatch.deadlines import schedule_deadline
from dispatch.matching import Candidate
from dispatch.orders import Order
from dispatch.runtime import Runtime
from providers.job_page import job_link
from providers.jobs import Job, PartyType, close_job, open_job
from providers.outbox import SmsPurpose, queue_sms
from providers.templates import Offer, is_english, job_offer

JOB_KIND = "order_offer"
OFFER_EXPIRED = "order.offer_expired"


class OfferOutcome(StrEnum):
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    TAKEN_BY_OTHER = "taken_by_other"


class OfferChoice(StrEnum):
    RANKED = "ranked"  # the best candidate
    FANOUT = "fanout"  # one of the best N of an urgent order, all asked at once
    OPERATOR = "operator"  # the operator's own choice over the ranking


@dataclass(frozen=True)
class OrderOffer:
    id: int
    order_id: int
    provider_id: int
    job_id: int
    chosen: OfferChoice
    rank: int | None
    score: float | None
    score_parts: dict[str, float]
    offered_at: dt.datetime
    offered_by: str
    due_at: dt.datetime
    outcome: OfferOutcome | None
    answered_at: dt.datetime | None
    answered_by: str | None
    withdrawn_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> OrderOffer:
        values = {name: row[name] for name in cls.__dataclass_fields__}
        values["chosen"] = OfferChoice(values["chosen"])
        values["outcome"] = OfferOutcome(values["outcome"]) if values["outcome"] else None
        return cls(**values)

    @property
    def pending(self) -> bool:
        return self.outcome is None

    @property
    def holds_order(self) -> bool:
        """Accepted and not taken back: this provider is the one doing the job."""
        return self.outcome is OfferOutcome.ACCEPTED and self.withdrawn_at is None

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            data[name] = value.isoformat() if isinstance(value, dt.datetime) else value
        return data


OFFER_COLUMNS = """id, order_id, provider_id, job_id, chosen, rank, score, score_parts, offered_at,
    offered_by, due_at, outcome, answered_at, answered_by, withdrawn_at"""


async def offers_of(conn: Conn, order_id: int) -> list[OrderOffer]:
    rows = await conn.fetch(
        f"SELECT {OFFER_COLUMNS} FROM order_offers WHERE order_id = $1 ORDER BY id", order_id
    )
    return [OrderOffer.from_row(r) for r in rows]


async def offer_for_job(conn: Conn, job_id: int) -> OrderOffer | None:
    row = await conn.fetchrow(f"SELECT {OFFER_COLUMNS} FROM order_offers WHERE job_id = $1", job_id)
    return OrderOffer.from_row(row) if row else None


async def get_offer(conn: Conn, offer_id: int) -> OrderOffer | None:
    row = await conn.fetchrow(f"SELECT {OFFER_COLUMNS} FROM order_offers WHERE id = $1", offer_id)
    return OrderOffer.from_row(row) if row else None


@dataclass(frozen=True)
class OfferTexts:
    """What an SMS about an order says: the item, and the resident as the offer shows them."""

    item: str
    resident_name: str
    community: str


async def offer_texts(conn: Conn, runtime: Runtime, order: Order) -> OfferTexts:
    row = await conn.fetchrow(
        """SELECT i.name_zh, i.name_en, r.name, coalesce(c.name, '') AS community
           FROM service_orders o JOIN service_items i ON i.code = o.item_code
           JOIN residents r ON r.id = o.resident_id LEFT JOIN communities c ON c.id = r.community_id
           WHERE o.id = $1""",
        order.id,
    )
    assert row is not None
    english = is_english(runtime.config.locale.language)
    return OfferTexts(row["name_en"] if english else row["name_zh"], row["name"], row["community"])


INSERT_OFFER = f"""
INSERT INTO order_offers (order_id, provider_id, job_id, chosen, rank, score, score_parts, offered_at,
                          offered_by, due_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING {OFFER_COLUMNS}
"""


async def open_offer(
    conn: Conn,
    runtime: Runtime,
    order: Order,
    provider_id: int,
    *,
    chosen: OfferChoice,
    candidate: Candidate | None,
    rank: int | None,
    actor: str,
    now: dt.datetime,
) -> OrderOffer:
    """Offer the order to one provider (in the caller's transaction, the order locked): its job with
    a fresh code, the offer row, the expiry deadline, and the offer SMS."""
    settings = runtime.config.orders
    sms_e164: str = await conn.fetchval("SELECT sms_e164 FROM providers WHERE id = $1", provider_id)
    # The code stays answerable through the visit (arrived, done), not only until the offer's deadline.
    job = await open_job(
        conn,
        kind=JOB_KIND,
        subject_type="order",
        subject_id=order.id,
        party_type=PartyType.PROVIDER,
        party_id=provider_id,
        expires_at=order.window_end + dt.timedelta(hours=settings.job_hours_after_window),
        context_id=order.context_id,
        now=now,
    )
    due_at = now + dt.timedelta(seconds=settings.offer_seconds)
    row = await conn.fetchrow(
        INSERT_OFFER,
        order.id,
        provider_id,
        job.id,
        chosen.value,
        rank,
        candidate.score if candidate else None,
        candidate.parts.as_json() if candidate else {},
        now,
        actor,
        due_at,
    )
    assert row is not None
    offer = OrderOffer.from_row(row)
    await schedule_deadline(
        conn,
        kind=OFFER_EXPIRED,
        subject_type="order",
        subject_id=order.id,
        due_at=due_at,
        payload={"offer_id": offer.id},
    )
    texts = await offer_texts(conn, runtime, order)
    body = job_offer(
        Offer(
            code=job.code,
            resident_name=texts.resident_name,
            community=texts.community,
            item=texts.item,
            window_start=order.window_start,
            window_end=order.window_end,
            link=job_link(runtime, job),
        ),
        language=runtime.config.locale.language,
        tz=runtime.tz,
    )
    await queue_sms(
        conn,
        sms_e164,
        body,
        purpose=SmsPurpose.OFFER,
        idempotency_key=f"job:{job.id}:offer",
        context_id=order.context_id,
        subject_type="order",
        subject_id=order.id,
        language=runtime.config.locale.language,
    )
    return offer


async def answer_offer(
    conn: Conn, offer_id: int, outcome: OfferOutcome, *, actor: str, at: dt.datetime
) -> OrderOffer | None:
    """Record an offer's outcome; None when it already had one."""
    row = await conn.fetchrow(
        f"""UPDATE order_offers SET outcome = $2, answered_at = $3, answered_by = $4
            WHERE id = $1 AND outcome IS NULL RETURNING {OFFER_COLUMNS}""",
        offer_id,
        outcome.value,
        at,
        actor,
    )
    return OrderOffer.from_row(row) if row else None


async def withdraw_offer(conn: Conn, offer_id: int, *, at: dt.datetime) -> OrderOffer | None:
    """Take an accepted order back from its provider; None when the offer does not hold the order."""
    row = await conn.fetchrow(
        f"""UPDATE order_offers SET withdrawn_at = $2
            WHERE id = $1 AND outcome = 'accepted' AND withdrawn_at IS NULL RETURNING {OFFER_COLUMNS}""",
        offer_id,
        at,
    )
    return OrderOffer.from_row(row) if row else None


async def close_offer_jobs(conn: Conn, closing: dict[int, OfferOutcome], *, at: dt.datetime) -> list[Job]:
    """Close these jobs (job id → close reason) except those a reply in flight holds; the jobs closed."""
    if not closing:
        return []
    free = await conn.fetch(
        "SELECT id FROM sms_jobs WHERE id = ANY($1::bigint[]) AND open ORDER BY id FOR UPDATE SKIP LOCKED",
        list(closing),
    )
    closed: list[Job] = []
    for row in free:
        job = await close_job(conn, row["id"], reason=closing[row["id"]].value, at=at)
        if job is not None:
            closed.append(job)
    return closed
