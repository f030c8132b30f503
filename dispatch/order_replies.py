"""A provider's answers to an order offer, by SMS reply or on its job page.

`1 <code>` accept → accepted (the first of an urgent fan-out wins), `2 <code>` decline → the
next candidate is asked at once, `3 <code>` arrived → check-in (in_service), `9 <code>` done →
check-out (completed). Check-ins and check-outs are recorded with source 'sms', or 'page' when
they came from the job page (whose actor is `page:provider:<id>`). Each runs in the reply's
transaction, through the same desk actions the API and the deadlines use.

The router holds the job's row lock when this runs; the handler then takes the order's. When
the offer was decided while the reply waited (taken by another provider, expired, the order
cancelled), the handler closes its own job to match and tells the provider.
"""

from __future__ import annotations

from dispatch.database import Conn
from dispatch.events import DomainEvent
from dispatch.offers import JOB_KIND, OfferOutcome, OrderOffer, offer_for_job, offer_texts
from dispatch.order_desk import OrderDesk
from dispatch.order_messages import StandDown, stand_down_text
from dispatch.orders import EvidenceSource, IllegalTransition, Order, OrderError, OrderState, get_order
from dispatch.visit_desk import VisitStep
from providers.jobs import Job, JobDetails, JobHandlers, JobOutcome, close_job
from providers.replies import ReplyAction
from providers.templates import mask_name

STATE_ZH = {
    OrderState.NEW: "新建",
    OrderState.OFFERED: "待接单",
    OrderState.ACCEPTED: "已接单",
    OrderState.IN_SERVICE: "服务中",
    OrderState.COMPLETED: "已完成",
    OrderState.CONFIRMED: "已回访确认",
    OrderState.SETTLED: "已结算",
    OrderState.CANCELLED: "已取消",
    OrderState.UNFILLED: "无人接单",
    OrderState.COMPLAINT: "投诉处理中",
}

# An offer decided while its provider's reply waited, as that provider is told (the words of the
# cancellation SMS the others get).
GONE: dict[OfferOutcome, StandDown] = {
    OfferOutcome.TAKEN_BY_OTHER: StandDown.TAKEN_BY_OTHER,
    OfferOutcome.EXPIRED: StandDown.EXPIRED,
    OfferOutcome.CANCELLED: StandDown.CANCELLED,
}


def _source(actor: str) -> EvidenceSource:
    return EvidenceSource.PAGE if actor.startswith("page:") else EvidenceSource.SMS


def register_order_replies(desk: OrderDesk) -> None:
    async def handle(conn: Conn, job: Job, action: ReplyAction, actor: str) -> JobOutcome:
        order = await get_order(conn, job.subject_id, for_update=True)
        offer = await offer_for_job(conn, job.id)
        if offer is None:
            return JobOutcome(
                f"工单{job.code}无效，请拨12349。", f"Job {job.code} is not valid; call 12349.", ok=False
            )
        code = job.code
        if offer.outcome is OfferOutcome.DECLINED:
            return JobOutcome(f"工单{code}您已拒绝。", f"You declined job {code}.", ok=False)
        if not offer.pending and not offer.holds_order:
            # decided while this reply waited for the order: the job follows the offer
            why = GONE.get(offer.outcome, StandDown.WITHDRAWN) if offer.outcome else StandDown.WITHDRAWN
            await close_job(
                conn, job.id, reason=(offer.outcome or OfferOutcome.ACCEPTED).value, at=desk.runtime.clock()
            )
            item = (await offer_texts(conn, desk.runtime, order)).item
            return JobOutcome(
                stand_down_text(code, item, why, "zh-CN"),
                stand_down_text(code, item, why, "en"),
                ok=False,
            )
        if offer.holds_order and order.state not in (OrderState.ACCEPTED, OrderState.IN_SERVICE):
            # the visit was closed another way (an operator's check-out) while this reply waited
            await close_job(conn, job.id, reason=OfferOutcome.ACCEPTED.value, at=desk.runtime.clock())
            return JobOutcome(
                f"工单{code}当前为“{STATE_ZH[order.state]}”，无需操作。",
                f"Job {code} is already {order.state.value}; nothing to do.",
                ok=False,
            )
        events: list[DomainEvent] = []
        try:
            answer = await _act(conn, desk, events, order, offer, job, action, actor)
        except IllegalTransition as exc:
            state = exc.current
            return JobOutcome(
                f"工单{code}当前状态为“{STATE_ZH[state]}”，此操作无效。如有疑问请拨12349。",
                f"Job {code} is {state.value}; that reply does not apply. Call 12349 if unsure.",
                ok=False,
            )
        except OrderError as exc:
            return JobOutcome(f"操作未完成：{exc}", f"Not done: {exc}", ok=False)
        return JobOutcome(answer[0], answer[1], ok=answer[2], events=tuple(events))

    async def details(conn: Conn, job: Job) -> JobDetails:
        order = await get_order(conn, job.subject_id)
        offer = await offer_for_job(conn, job.id)
        texts = await offer_texts(conn, desk.runtime, order)
        tz = desk.runtime.tz
        start, end = order.window_start.astimezone(tz), order.window_end.astimezone(tz)
        holds = offer is not None and offer.holds_order
        lines = [
            ("状态", STATE_ZH[order.state] if holds or (offer and offer.pending) else "已不属于您"),
            ("服务项目", texts.item),
            ("时间", f"{start:%m-%d %H:%M} - {end:%H:%M}"),
            ("社区", texts.community or "—"),
        ]
        map_link = None
        if holds:
            # the address and name are for the provider doing the job, not for every one asked
            row = await conn.fetchrow(
                """SELECT r.name, r.address, coalesce(r.lat, c.lat) AS lat, coalesce(r.lon, c.lon) AS lon
                   FROM residents r LEFT JOIN communities c ON c.id = r.community_id WHERE r.id = $1""",
                order.resident_id,
            )
            assert row is not None
            lines += [("老人", row["name"]), ("地址", row["address"] or "—")]
            if row["lat"] is not None and row["lon"] is not None:
                map_link = f"https://uri.amap.com/marker?position={row['lon']},{row['lat']}&name=12349"
        else:
            lines.append(("老人", mask_name(texts.resident_name)))
        lines.append(("备注", order.notes or "—"))
        return JobDetails(
            title=f"服务工单 {job.code}",
            lines=lines,
            map_link=map_link,
            actions=_page_actions(order, offer),
        )

    JobHandlers.register(JOB_KIND, handle, details=details)


def _page_actions(order: Order, offer: OrderOffer | None) -> tuple[ReplyAction, ...]:
    if offer is None:
        return ()
    if offer.pending and order.state is OrderState.OFFERED:
        return (ReplyAction.ACCEPT, ReplyAction.DECLINE)
    if offer.holds_order and order.state is OrderState.ACCEPTED:
        return (ReplyAction.ARRIVED,)
    if offer.holds_order and order.state is OrderState.IN_SERVICE:
        return (ReplyAction.DONE,)
    return ()


async def _act(
    conn: Conn,
    desk: OrderDesk,
    events: list[DomainEvent],
    order: Order,
    offer: OrderOffer,
    job: Job,
    action: ReplyAction,
    actor: str,
) -> tuple[str, str, bool]:
    code = job.code
    now = desk.runtime.clock()
    if action is ReplyAction.ACCEPT:
        if offer.holds_order:
            return f"工单{code}您已接单，请按时上门。", f"You already accepted job {code}.", True
        if now >= offer.due_at:
            # the deadline is due but not yet fired: the answer came too late all the same
            await desk.expire_in(conn, events, order, offer)
            return (
                f"工单{code}已超时，已派给其他服务商。",
                f"Job {code} timed out; it went to another provider.",
                False,
            )
        await desk.accept_in(conn, events, order, offer, actor)
        return (
            f"已接单{code}，请按时上门。到达后回复 3 {code}，完成后回复 9 {code}。",
            f"Job {code} is yours. Reply 3 {code} on arrival, 9 {code} when done.",
            True,
        )
    if action is ReplyAction.DECLINE:
        if offer.holds_order:
            return (
                f"工单{code}您已接单，如无法上门请致电12349改派。",
                f"You accepted job {code}; call 12349 if you cannot go.",
                False,
            )
        await desk.decline_in(conn, events, order, offer, job, actor)
        return f"已收到，您拒绝了工单{code}。", f"Noted: you declined job {code}.", True
    if not offer.holds_order:
        return f"请先回复 1 {code} 接单。", f"Reply 1 {code} to accept the job first.", False
    if action is ReplyAction.ARRIVED:
        await desk.record_visit_in(conn, events, order, VisitStep.CHECK_IN, actor, source=_source(actor))
        return (
            f"已签到（{code}）。服务完成后回复 9 {code}。",
            f"Checked in ({code}). Reply 9 {code} when done.",
            True,
        )
    await desk.record_visit_in(conn, events, order, VisitStep.CHECK_OUT, actor, source=_source(actor))
    return f"工单{code}已完成签退，谢谢！", f"Job {code} checked out. Thank you!", True
