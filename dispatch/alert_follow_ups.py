"""One case file: follow-up work opened from an alert in one action, linked to it.

- `follow_up_call`: a care call to the resident (a call task, subject the alert, `alert_id` on
  the task and on every try), by default `orders.alert_follow_up_seconds` after the action and
  out of quiet hours, at the latest within 24 h; unanswered, tried again, then an operator asked.
- `nursing_visit` / `repair`: a service order for a catalogue item (a repair defaults to
  `orders.repair_item_code`; a grab rail is an item too), source 'alert', `alert_id` on the order.

Each is written in one transaction with a note on the alert's timeline.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dispatch.alerts import get_alert, note
from dispatch.call_task_steps import Answer, TaskHooks
from dispatch.call_tasks import CallTask, NewTask, TaskPurpose, TaskReason, outside_quiet_hours, schedule_task
from dispatch.database import Conn
from dispatch.events import DomainEvent
from dispatch.order_desk import MAX_AHEAD, OrderDesk
from dispatch.orders import InvalidOrder, OrderSource

ACTOR = "system:alert-follow-up"
LATEST = dt.timedelta(hours=24)
VISIT_WINDOW = dt.timedelta(hours=24)


class FollowUpType(StrEnum):
    FOLLOW_UP_CALL = "follow_up_call"
    NURSING_VISIT = "nursing_visit"
    REPAIR = "repair"


class NoResident(Exception):
    """An alert from a device nobody registered: there is nobody to call or visit."""

    code = "no_resident"


@dataclass(frozen=True)
class FollowUpRequest:
    type: FollowUpType
    due_at: dt.datetime | None = None
    item_code: str | None = None
    window_start: dt.datetime | None = None
    window_end: dt.datetime | None = None
    notes: str = ""


async def open_follow_up(
    desk: OrderDesk, alert_id: int, request: FollowUpRequest, actor: str
) -> dict[str, Any]:
    """The task or the order opened, as JSON; AlertNotFound, NoResident or an OrderError when not."""
    runtime = desk.runtime
    settings = desk.settings

    async def work(conn: Conn, events: list[DomainEvent]) -> dict[str, Any]:
        now = runtime.clock()
        alert = await get_alert(conn, alert_id, for_update=True)
        if alert.resident_id is None:
            raise NoResident(f"alert {alert_id} has no known resident")
        if request.type is FollowUpType.FOLLOW_UP_CALL:
            due = request.due_at or outside_quiet_hours(
                now + dt.timedelta(seconds=settings.alert_follow_up_seconds),
                runtime.tz,
                settings.quiet_start_hour,
                settings.quiet_end_hour,
            )
            if due.tzinfo is None:
                raise InvalidOrder("due_at", "give the time zone, e.g. +08:00")
            if due > now + LATEST:
                raise InvalidOrder("due_at", "a follow-up call is made within 24 h")
            task, scheduled = await schedule_task(
                conn,
                NewTask(
                    reason=TaskReason.ALERT_FOLLOW_UP,
                    purpose=TaskPurpose.CARE_CALL,
                    resident_id=alert.resident_id,
                    subject_type="alert",
                    subject_id=alert.id,
                    due_at=max(due, now),
                    max_tries=settings.follow_up_tries,
                    retry_seconds=int(settings.follow_up_retry_seconds),
                    context_id=alert.context_id,
                    alert_id=alert.id,
                ),
                actor=actor,
                at=now,
            )
            events.append(scheduled)
            events.append(
                await note(
                    conn,
                    alert.id,
                    kind="alert.follow_up_opened",
                    actor=actor,
                    at=now,
                    data={"type": request.type.value, "task_id": task.id, "due_at": task.due_at.isoformat()},
                )
            )
            return {"type": request.type.value, "task": task.as_json()}
        item = request.item_code or (
            settings.repair_item_code if request.type is FollowUpType.REPAIR else None
        )
        if item is None:
            raise InvalidOrder("item_code", "is required for a nursing visit (e.g. MN10)")
        start = request.window_start or now
        if start > now + MAX_AHEAD:
            # checked before the default end is added to it (9999-12-31 + 24 h does not exist)
            raise InvalidOrder("window_start", f"at most {MAX_AHEAD.days} days ahead")
        offered = await desk.create_order_in(
            conn,
            events,
            resident_id=alert.resident_id,
            item_code=item,
            window_start=start,
            window_end=request.window_end or start + VISIT_WINDOW,
            notes=request.notes or f"警情 {alert.id} 的后续服务 / follow-up of alert {alert.id}",
            source=OrderSource.ALERT,
            actor=actor,
            alert_id=alert.id,
        )
        events.append(
            await note(
                conn,
                alert.id,
                kind="alert.follow_up_opened",
                actor=actor,
                at=now,
                data={"type": request.type.value, "order_id": offered.order.id, "item_code": item},
            )
        )
        return {"type": request.type.value, "order": offered.order.as_json()}

    events: list[DomainEvent] = []
    async with runtime.pool.acquire() as conn, conn.transaction():
        opened = await work(conn, events)
    await runtime.bus.publish(*events)
    return opened


async def follow_ups_of(conn: Conn, alert_id: int) -> dict[str, Any]:
    """Everything opened from an alert: its call tasks and its orders."""
    await get_alert(conn, alert_id)
    tasks = await conn.fetch(
        "SELECT id, reason, state, outcome, due_at, tries FROM call_tasks WHERE alert_id = $1 ORDER BY id",
        alert_id,
    )
    orders = await conn.fetch(
        "SELECT id, item_code, state, created_at FROM service_orders WHERE alert_id = $1 ORDER BY id",
        alert_id,
    )
    return {
        "calls": [{**dict(r.items()), "due_at": r["due_at"].isoformat()} for r in tasks],
        "orders": [{**dict(r.items()), "created_at": r["created_at"].isoformat()} for r in orders],
    }


class AlertFollowUpHooks(TaskHooks):
    """The follow-up call reached the resident: a note on the alert's timeline."""

    async def answered(
        self, conn: Conn, events: list[DomainEvent], task: CallTask, answer: Answer, now: dt.datetime
    ) -> str:
        events.append(
            await note(
                conn,
                task.subject_id,
                kind="alert.follow_up_answered",
                actor=ACTOR,
                at=now,
                data={"task_id": task.id, "attempt_id": answer.attempt.id, "digit": answer.digit},
            )
        )
        return "answered"

    def manual_text(self, task: CallTask, why: str) -> tuple[str, str]:
        return (
            f"警情 {task.subject_id} 的回访电话未接通（{why}），请人工回访老人。",
            f"alert {task.subject_id}: the follow-up call did not get through ({why}); "
            "please call the resident.",
        )
