"""What the service lane tells people besides the offer itself: providers stood down or reminded
by SMS, the family told the service happened, operators told what needs a person.

Everything runs in the caller's transaction: an SMS row or a notice exists exactly when the
order change that caused it committed. Phone numbers are read here and handed to the outbox,
never logged.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from dispatch.database import Conn
from dispatch.events import DomainEvent
from dispatch.notices import Severity, raise_notice
from dispatch.offers import OrderOffer, offer_texts
from dispatch.orders import Order
from dispatch.runtime import Runtime
from providers.job_page import job_link
from providers.jobs import Job
from providers.outbox import SmsPurpose, queue_sms
from providers.templates import cancellation, is_english, proof_of_service, reminder


async def _provider_sms(conn: Conn, provider_id: int) -> str:
    sms_e164: str = await conn.fetchval("SELECT sms_e164 FROM providers WHERE id = $1", provider_id)
    return sms_e164


class StandDown(StrEnum):
    """Why a provider is told not to go."""

    TAKEN_BY_OTHER = "taken_by_other"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    WITHDRAWN = "withdrawn"


STAND_DOWN_WHY: dict[StandDown, tuple[str, str]] = {
    StandDown.TAKEN_BY_OTHER: ("已被其他服务商接单", "taken by another provider"),
    StandDown.EXPIRED: ("超时未回复", "no answer in time"),
    StandDown.CANCELLED: ("工单已取消", "the order was cancelled"),
    StandDown.WITHDRAWN: ("已改派", "given to another provider"),
}


def stand_down_text(code: str, item: str, why: StandDown, language: str) -> str:
    why_zh, why_en = STAND_DOWN_WHY[why]
    reason = why_en if is_english(language) else why_zh
    return cancellation(code=code, item=item, reason=reason, language=language)


async def stand_down(conn: Conn, runtime: Runtime, order: Order, jobs: list[Job], why: StandDown) -> None:
    """Tell providers whose jobs were closed (taken by another, cancelled, taken back) not to go."""
    if not jobs:
        return
    language = runtime.config.locale.language
    texts = await offer_texts(conn, runtime, order)
    for job in jobs:
        await queue_sms(
            conn,
            await _provider_sms(conn, job.party_id),
            stand_down_text(job.code, texts.item, why, language),
            purpose=SmsPurpose.CANCELLATION,
            idempotency_key=f"job:{job.id}:cancel",
            context_id=order.context_id,
            subject_type="order",
            subject_id=order.id,
            language=language,
        )


async def remind(conn: Conn, runtime: Runtime, order: Order, holder: OrderOffer, job: Job) -> None:
    """Before the window: what, when, and how to check in."""
    texts = await offer_texts(conn, runtime, order)
    language = runtime.config.locale.language
    await queue_sms(
        conn,
        await _provider_sms(conn, holder.provider_id),
        reminder(
            code=job.code,
            item=texts.item,
            window_start=order.window_start,
            link=job_link(runtime, job),
            language=language,
            tz=runtime.tz,
        ),
        purpose=SmsPurpose.REMINDER,
        idempotency_key=f"job:{job.id}:reminder",
        context_id=order.context_id,
        subject_type="order",
        subject_id=order.id,
        language=language,
    )


async def tell_family(conn: Conn, runtime: Runtime, order: Order) -> None:
    """The first emergency contact hears that the service happened, by whom, and its rating."""
    if order.checked_in_at is None or order.checked_out_at is None:
        return
    row = await conn.fetchrow(
        """SELECT e.phone_e164, p.name AS provider FROM emergency_contacts e, providers p
           WHERE e.resident_id = $1 AND p.id = $2 ORDER BY e.position LIMIT 1""",
        order.resident_id,
        order.provider_id,
    )
    if row is None:
        return
    texts = await offer_texts(conn, runtime, order)
    language = runtime.config.locale.language
    await queue_sms(
        conn,
        row["phone_e164"],
        proof_of_service(
            resident_name=texts.resident_name,
            item=texts.item,
            provider_name=row["provider"],
            started_at=order.checked_in_at,
            ended_at=order.checked_out_at,
            rating=order.rating,
            language=language,
            tz=runtime.tz,
        ),
        purpose=SmsPurpose.PROOF_OF_SERVICE,
        idempotency_key=f"order:{order.id}:proof_of_service",
        context_id=order.context_id,
        subject_type="order",
        subject_id=order.id,
        language=language,
    )


async def _notice(
    conn: Conn, order: Order, kind: str, zh: str, en: str, data: dict[str, object], now: dt.datetime
) -> DomainEvent:
    return await raise_notice(
        conn,
        kind=kind,
        severity=Severity.WARNING,
        text=f"工单 {order.id}：{zh} / Order {order.id}: {en}",
        subject_type="order",
        subject_id=order.id,
        context_id=order.context_id,
        data=data,
        at=now,
    )


async def unfilled_notice(conn: Conn, order: Order, asked: int, now: dt.datetime) -> DomainEvent:
    return await _notice(
        conn,
        order,
        "order.unfilled",
        f"无服务商接单（已派 {asked} 家），请人工安排。",
        f"no provider accepted ({asked} asked); please arrange it.",
        {"offers": asked},
        now,
    )


async def complaint_notice(conn: Conn, order: Order, rating: int, now: dt.datetime) -> DomainEvent:
    return await _notice(
        conn,
        order,
        "order.complaint",
        f"老人评分 {rating} 分，已转为投诉，请跟进。",
        f"rated {rating}/5, opened as a complaint; please follow up.",
        {"rating": rating, "provider_id": order.provider_id},
        now,
    )


async def late_visit_notice(conn: Conn, order: Order, late_minutes: int, now: dt.datetime) -> DomainEvent:
    state = order.state.value
    return await _notice(
        conn,
        order,
        "order.late_visit",
        f"服务时段已开始 {late_minutes} 分钟，仍未签到（{state}）。",
        f"{late_minutes} min into its window and nobody has checked in ({state}).",
        {"state": state, "provider_id": order.provider_id},
        now,
    )
