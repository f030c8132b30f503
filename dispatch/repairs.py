"""Device faults become repair orders: one open per device, a remedy clock, a reassurance call.

A device that misses two heartbeats (telephony/alarms/heartbeats.py) or reports low battery,
mains loss, a fault or tamper (telephony/alarms/intake.py) asks for a repair with
`request_repair`, in the same transaction as its maintenance notice: a `device.repair`
deadline due at once. Intake and the sweep stay quick and need no order desk, and the
request survives a crash like every other step. When it fires:

- the device's open repair order (source 'device') is joined: a note on its timeline;
- or a repair order is taken for `orders.repair_item_code` and offered like any order,
  with an `order.remedy_due` deadline (`orders.repair_remedy_seconds`, 2 h by default:
  not completed by then → a critical notice for the supervisors) and a reassurance call
  to the resident (a care-call task: the unit is being seen to, press a key if all is well).

A unique index (migration 0008) keeps one open repair order per device even when two
instances fire two requests at once: the loser's transaction fails and, retried, joins.
"""

from __future__ import annotations

import datetime as dt

from dispatch.call_task_steps import Answer, TaskHooks
from dispatch.call_tasks import CallTask, NewTask, TaskPurpose, TaskReason, outside_quiet_hours, schedule_task
from dispatch.database import Conn
from dispatch.deadlines import Deadline, DeadlineHandlers, schedule_deadline
from dispatch.events import DomainEvent
from dispatch.notices import Severity, raise_notice
from dispatch.order_desk import OrderDesk
from dispatch.orders import InvalidOrder, OrderSource, OrderState, get_order, note

REPAIR = "device.repair"
REMEDY_DUE = "order.remedy_due"
ACTOR = "system:repairs"
# a repair order still open: the device is not fixed yet
OPEN = ("new", "offered", "accepted", "in_service", "unfilled")
FAULT_ZH = {
    "silent": "心跳中断",
    "low_battery": "电池电量低",
    "mains_loss": "市电断电",
    "trouble": "设备故障",
    "tamper": "设备被拆动",
}


async def request_repair(conn: Conn, device_id: int, fault: str, now: dt.datetime) -> None:
    """In the caller's transaction: the device needs repairing (the order is made when it fires)."""
    await schedule_deadline(
        conn, kind=REPAIR, subject_type="device", subject_id=device_id, due_at=now, payload={"fault": fault}
    )


class Repairs:
    def __init__(self, desk: OrderDesk) -> None:
        self.desk = desk

    def register(self, handlers: DeadlineHandlers) -> None:
        handlers.register(REPAIR, self.repair_due)
        handlers.register(REMEDY_DUE, self.remedy_due)

    async def repair_due(self, conn: Conn, deadline: Deadline, now: dt.datetime) -> list[DomainEvent]:
        fault = str(deadline.payload.get("fault", "trouble"))
        device = await conn.fetchrow(
            "SELECT id, serial, resident_id FROM devices WHERE id = $1 FOR UPDATE", deadline.subject_id
        )
        if device is None or device["resident_id"] is None:
            return []  # nobody to send a provider to: the maintenance notice is the operators' lead
        events: list[DomainEvent] = []
        open_id = await conn.fetchval(
            """SELECT id FROM service_orders WHERE device_id = $1 AND source = 'device'
               AND state = ANY($2::text[]) FOR UPDATE""",
            device["id"],
            list(OPEN),
        )
        if open_id is not None:
            order = await get_order(conn, open_id)
            events.append(
                await note(
                    conn, order, kind="order.repair_joined", actor=ACTOR, at=now, data={"fault": fault}
                )
            )
            return events
        settings = self.desk.settings
        what = FAULT_ZH.get(fault, fault)
        try:
            offered = await self.desk.create_order_in(
                conn,
                events,
                resident_id=device["resident_id"],
                item_code=settings.repair_item_code,
                window_start=now,
                window_end=now + dt.timedelta(seconds=settings.repair_remedy_seconds),
                notes=f"设备 {device['serial']}：{what} / device {device['serial']}: {fault}",
                source=OrderSource.DEVICE,
                actor=ACTOR,
                device_id=device["id"],
            )
        except InvalidOrder as exc:
            # no repair item in the catalogue (or the resident left): a person arranges it
            events.append(
                await raise_notice(
                    conn,
                    kind="device.repair_manual",
                    severity=Severity.WARNING,
                    text=f"设备 {device['serial']}（{what}）无法自动建维修工单（{exc}），请人工安排。"
                    f" / Device {device['serial']} ({fault}): no repair order could be opened ({exc}); "
                    "please arrange the repair.",
                    subject_type="device",
                    subject_id=device["id"],
                    data={"fault": fault, "audience": "maintenance"},
                    at=now,
                )
            )
            return events
        order = offered.order
        await schedule_deadline(
            conn,
            kind=REMEDY_DUE,
            subject_type="order",
            subject_id=order.id,
            due_at=now + dt.timedelta(seconds=settings.repair_remedy_seconds),
        )
        _, scheduled = await schedule_task(
            conn,
            NewTask(
                reason=TaskReason.REPAIR_REASSURANCE,
                purpose=TaskPurpose.CARE_CALL,
                resident_id=order.resident_id,
                subject_type="order",
                subject_id=order.id,
                due_at=outside_quiet_hours(
                    now, self.desk.runtime.tz, settings.quiet_start_hour, settings.quiet_end_hour
                ),
                max_tries=settings.follow_up_tries,
                retry_seconds=int(settings.follow_up_retry_seconds),
                context_id=order.context_id,
            ),
            actor=ACTOR,
            at=now,
        )
        events.append(scheduled)
        return events

    async def remedy_due(self, conn: Conn, deadline: Deadline, now: dt.datetime) -> list[DomainEvent]:
        order = await get_order(conn, deadline.subject_id, for_update=True)
        if order.state.value not in OPEN:
            return []
        hours = round(self.desk.settings.repair_remedy_seconds / 3600, 1)
        return [
            await raise_notice(
                conn,
                kind="order.remedy_overdue",
                severity=Severity.CRITICAL,
                text=f"维修工单 {order.id} 超过 {hours} 小时未修复（{order.state.value}），请班长跟进。"
                f" / Repair order {order.id} not remedied within {hours} h ({order.state.value}); "
                "supervisor, please step in.",
                subject_type="order",
                subject_id=order.id,
                context_id=order.context_id,
                data={"device_id": order.device_id, "state": order.state.value, "audience": "supervisor"},
                at=now,
            )
        ]


class ReassuranceHooks(TaskHooks):
    """The resident is told the unit is being seen to; an answer is noted on the repair order."""

    async def wanted(self, conn: Conn, task: CallTask) -> bool:
        order = await get_order(conn, task.subject_id)
        return order.state not in (OrderState.CANCELLED,)

    async def answered(
        self, conn: Conn, events: list[DomainEvent], task: CallTask, answer: Answer, now: dt.datetime
    ) -> str:
        order = await get_order(conn, task.subject_id)
        events.append(
            await note(
                conn,
                order,
                kind="order.reassured",
                actor=ACTOR,
                at=now,
                data={"attempt_id": answer.attempt.id, "digit": answer.digit},
            )
        )
        return "answered"

    def manual_text(self, task: CallTask, why: str) -> tuple[str, str]:
        return (
            f"维修工单 {task.subject_id}：安抚电话未接通（{why}），请人工告知老人设备正在维修。",
            f"repair order {task.subject_id}: the reassurance call did not get through ({why}); please tell "
            "the resident the unit is being repaired.",
        )
