"""The follow-up call (回访) after a visit: an IVR call asking the resident for a 1-5 rating.

Check-out schedules it (`schedule_follow_up`, in the check-out's transaction) as a call task
`orders.follow_up_delay_seconds` later, out of quiet hours. The digit pressed confirms the
order through the same step as an operator's confirmation (`VisitDesk.confirm_in`), so a
rating of 1 or 2 opens a complaint and the family gets the proof-of-service SMS. No answer,
busy, failed or no valid digit: tried again, then a notice asks an operator to call; an
operator who confirmed the order first makes the call pointless, and it is not placed.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from dispatch.call_task_steps import Answer, TaskHooks
from dispatch.call_tasks import (
    CallTask,
    NewTask,
    TaskPurpose,
    TaskReason,
    cancel_tasks,
    outside_quiet_hours,
    schedule_task,
)
from dispatch.config import OrdersConfig
from dispatch.database import Conn
from dispatch.events import DomainEvent
from dispatch.orders import Order, OrderState, get_order, note

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from dispatch.visit_desk import VisitDesk

ACTOR = "system:follow-up"


async def schedule_follow_up(
    conn: Conn, settings: OrdersConfig, tz: ZoneInfo, order: Order, now: dt.datetime
) -> DomainEvent:
    """After check-out: the rating call, `follow_up_delay_seconds` on and out of quiet hours."""
    due = outside_quiet_hours(
        now + dt.timedelta(seconds=settings.follow_up_delay_seconds),
        tz,
        settings.quiet_start_hour,
        settings.quiet_end_hour,
    )
    _, event = await schedule_task(
        conn,
        NewTask(
            reason=TaskReason.ORDER_FOLLOW_UP,
            purpose=TaskPurpose.RATING,
            resident_id=order.resident_id,
            subject_type="order",
            subject_id=order.id,
            due_at=due,
            max_tries=settings.follow_up_tries,
            retry_seconds=int(settings.follow_up_retry_seconds),
            context_id=order.context_id,
            alert_id=order.alert_id,
        ),
        actor=ACTOR,
        at=now,
    )
    return event


async def drop_follow_up(conn: Conn, order: Order, now: dt.datetime) -> None:
    """The order was confirmed by other means: its follow-up call is not placed."""
    await cancel_tasks(
        conn, "order", order.id, why="confirmed", at=now, reasons=(TaskReason.ORDER_FOLLOW_UP,)
    )


class FollowUpHooks(TaskHooks):
    def __init__(self, desk: VisitDesk) -> None:
        self.desk = desk

    async def wanted(self, conn: Conn, task: CallTask) -> bool:
        order = await get_order(conn, task.subject_id)
        return order.state is OrderState.COMPLETED

    async def answered(
        self, conn: Conn, events: list[DomainEvent], task: CallTask, answer: Answer, now: dt.datetime
    ) -> str:
        assert answer.rating is not None
        order = await get_order(conn, task.subject_id, for_update=True)
        if order.state is OrderState.COMPLETED:
            await self.desk.confirm_in(
                conn, events, order, ACTOR, rating=answer.rating, note_text=f"IVR 回访 {answer.rating}"
            )
            return f"rated {answer.rating}"
        # confirmed by an operator while the call rang: the resident's digit is kept on the timeline
        events.append(
            await note(
                conn,
                order,
                kind="order.follow_up_rating_late",
                actor=ACTOR,
                at=now,
                data={"rating": answer.rating, "state": order.state.value},
            )
        )
        return f"rated {answer.rating} after {order.state.value}"

    def manual_text(self, task: CallTask, why: str) -> tuple[str, str]:
        return (
            f"工单 {task.subject_id} 回访电话未完成（{why}），请人工回访并录入评分。",
            f"order {task.subject_id}: the follow-up call did not get a rating ({why}); please call and "
            "confirm the rating by hand.",
        )
