"""Care plans (关爱服务): recurring care calls to a resident; unanswered calls in a row raise an
inactivity alert through the emergency lane.

The plan row is the truth; its next due call is one `care_plan.due` deadline row. APScheduler's
triggers (CronTrigger for days of the week at a local time, IntervalTrigger for every N
seconds) only compute that next time: a job kept in APScheduler's in-memory job store would
be lost with the process (and a persistent job store would be a second place where timers
live), while a deadline row fires after a restart like every other step, at most once, and
is claimed by one instance when several run.

When the deadline fires it makes a call task (dispatch/call_tasks.py, reason care_plan) due at
once and arms the next due time. The task's answer resets the plan's unanswered counter; each
unanswered try counts it up, an unanswered care call is tried again after `retry_seconds`, and
at `unanswered_threshold` in a row an inactivity alert is raised (and the counter starts again).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import asyncpg
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from dispatch.alert_desk import Actor, AlertDesk
from dispatch.alerts import AlertKind, AlertSource
from dispatch.call_task_steps import Answer, TaskHooks
from dispatch.call_tasks import CallTask, NewTask, TaskPurpose, TaskReason, cancel_tasks, schedule_task
from dispatch.database import Conn
from dispatch.deadlines import Deadline, DeadlineHandlers, cancel_deadlines, schedule_deadline
from dispatch.events import DomainEvent, append_event
from dispatch.runtime import Runtime

T = TypeVar("T")

DUE = "care_plan.due"
ACTOR = "system:care-plans"
DAY_NAMES = {1: "mon", 2: "tue", 3: "wed", 4: "thu", 5: "fri", 6: "sat", 7: "sun"}
MIN_INTERVAL = 600
MAX_INTERVAL = 31 * 86400
# a plan starts within the coming year
MAX_AHEAD = dt.timedelta(days=366)


class Schedule(StrEnum):
    WEEKLY = "weekly"
    INTERVAL = "interval"


class CarePlanError(Exception):
    code = "care_plan_error"


class PlanNotFound(CarePlanError):
    code = "not_found"


class InvalidPlan(CarePlanError):
    code = "invalid"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class CarePlan:
    id: int
    resident_id: int
    schedule: Schedule
    days: list[int]
    time_of_day: dt.time | None
    interval_seconds: int | None
    starts_at: dt.datetime
    active: bool
    unanswered_threshold: int
    retry_seconds: int
    unanswered_in_a_row: int
    notes: str
    created_at: dt.datetime
    created_by: str
    updated_at: dt.datetime
    next_due_at: dt.datetime | None
    last_called_at: dt.datetime | None
    last_answered_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> CarePlan:
        values = {name: row[name] for name in cls.__dataclass_fields__}
        values["schedule"] = Schedule(values["schedule"])
        values["days"] = list(values["days"])
        return cls(**values)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            data[name] = value.isoformat() if isinstance(value, dt.datetime | dt.time) else value
        if self.time_of_day is not None:
            data["time_of_day"] = self.time_of_day.strftime("%H:%M")
        return data


COLUMNS = """id, resident_id, schedule, days, time_of_day, interval_seconds, starts_at, active,
    unanswered_threshold, retry_seconds, unanswered_in_a_row, notes, created_at, created_by, updated_at,
    next_due_at, last_called_at, last_answered_at"""


async def get_plan(conn: Conn, plan_id: int, *, for_update: bool = False) -> CarePlan:
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM care_plans WHERE id = $1" + (" FOR UPDATE" if for_update else ""), plan_id
    )
    if row is None:
        raise PlanNotFound(f"care plan {plan_id} not found")
    return CarePlan.from_row(row)


async def plans_of(conn: Conn, resident_id: int) -> list[CarePlan]:
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM care_plans WHERE resident_id = $1 ORDER BY id", resident_id
    )
    return [CarePlan.from_row(r) for r in rows]


def trigger_of(plan: CarePlan, tz: ZoneInfo) -> BaseTrigger:
    if plan.schedule is Schedule.WEEKLY:
        assert plan.time_of_day is not None
        return CronTrigger(
            day_of_week=",".join(DAY_NAMES[d] for d in sorted(plan.days)),
            hour=plan.time_of_day.hour,
            minute=plan.time_of_day.minute,
            timezone=tz,
            start_date=plan.starts_at,
        )
    assert plan.interval_seconds is not None
    return IntervalTrigger(seconds=plan.interval_seconds, start_date=plan.starts_at, timezone=tz)


def next_due(plan: CarePlan, tz: ZoneInfo, after: dt.datetime) -> dt.datetime | None:
    """The plan's first call time strictly after `after` (UTC), by its trigger."""
    fire: dt.datetime | None = trigger_of(plan, tz).get_next_fire_time(
        None, after + dt.timedelta(microseconds=1)
    )
    return fire.astimezone(dt.UTC) if fire is not None else None


@dataclass(frozen=True)
class PlanFields:
    """What an operator sets on a plan (None: unchanged on update, the default on create)."""

    schedule: Schedule | None = None
    days: list[int] | None = None
    time_of_day: dt.time | None = None
    interval_seconds: int | None = None
    starts_at: dt.datetime | None = None
    unanswered_threshold: int | None = None
    retry_seconds: int | None = None
    notes: str | None = None
    active: bool | None = None


def _check(
    fields: PlanFields,
    schedule: Schedule,
    days: list[int],
    time_of_day: dt.time | None,
    interval: int | None,
    now: dt.datetime,
) -> None:
    if schedule is Schedule.WEEKLY:
        if not days or any(d not in DAY_NAMES for d in days) or len(set(days)) != len(days):
            raise InvalidPlan("days", "expected distinct ISO days of the week, 1 (Monday) to 7")
        if time_of_day is None:
            raise InvalidPlan("time_of_day", "is required for a weekly plan (HH:MM, local time)")
    elif interval is None or not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        raise InvalidPlan("interval_seconds", f"expected {MIN_INTERVAL} to {MAX_INTERVAL} seconds")
    if fields.unanswered_threshold is not None and not 1 <= fields.unanswered_threshold <= 20:
        raise InvalidPlan("unanswered_threshold", "expected 1 to 20")
    if fields.retry_seconds is not None and not 0 <= fields.retry_seconds <= 86400:
        raise InvalidPlan("retry_seconds", "expected 0 to 86400")
    if fields.starts_at is not None and fields.starts_at.tzinfo is None:
        raise InvalidPlan("starts_at", "give the time zone, e.g. +08:00")
    if fields.starts_at is not None and fields.starts_at > now + MAX_AHEAD:
        # and the triggers could not compute a time near the end of the calendar
        raise InvalidPlan("starts_at", f"at most {MAX_AHEAD.days} days ahead")


class CarePlanDesk:
    """Create, change, pause and resume plans; each action one transaction that re-arms the plan."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def _run(self, work: Callable[[Conn, list[DomainEvent]], Awaitable[T]]) -> T:
        events: list[DomainEvent] = []
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            result = await work(conn, events)
        await self.runtime.bus.publish(*events)
        return result

    async def create(self, resident_id: int, fields: PlanFields, actor: str) -> CarePlan:
        settings = self.runtime.config.orders
        schedule = fields.schedule or Schedule.WEEKLY
        days = fields.days or []
        _check(fields, schedule, days, fields.time_of_day, fields.interval_seconds, self.runtime.clock())

        async def work(conn: Conn, events: list[DomainEvent]) -> CarePlan:
            now = self.runtime.clock()
            if not await conn.fetchval("SELECT active FROM residents WHERE id = $1", resident_id):
                raise PlanNotFound(f"no active resident {resident_id}")
            row = await conn.fetchrow(
                f"""INSERT INTO care_plans (resident_id, schedule, days, time_of_day, interval_seconds,
                        starts_at, active, unanswered_threshold, retry_seconds, notes, created_at, created_by,
                        updated_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $11) RETURNING {COLUMNS}""",
                resident_id,
                schedule.value,
                days,
                fields.time_of_day if schedule is Schedule.WEEKLY else None,
                fields.interval_seconds if schedule is Schedule.INTERVAL else None,
                fields.starts_at or now,
                True if fields.active is None else fields.active,
                fields.unanswered_threshold or settings.care_unanswered_threshold,
                settings.care_retry_seconds if fields.retry_seconds is None else fields.retry_seconds,
                fields.notes or "",
                now,
                actor,
            )
            assert row is not None
            plan = await self._arm(conn, CarePlan.from_row(row), now)
            events.append(await _plan_event(conn, plan, "care_plan.created", actor, now))
            return plan

        return await self._run(work)

    async def update(self, plan_id: int, fields: PlanFields, actor: str) -> CarePlan:
        async def work(conn: Conn, events: list[DomainEvent]) -> CarePlan:
            now = self.runtime.clock()
            plan = await get_plan(conn, plan_id, for_update=True)
            schedule = fields.schedule or plan.schedule
            days = fields.days if fields.days is not None else plan.days
            time_of_day = fields.time_of_day or plan.time_of_day
            interval = fields.interval_seconds or plan.interval_seconds
            _check(fields, schedule, days, time_of_day, interval, now)
            row = await conn.fetchrow(
                f"""UPDATE care_plans SET schedule = $2, days = $3, time_of_day = $4, interval_seconds = $5,
                        starts_at = coalesce($6, starts_at),
                        unanswered_threshold = coalesce($7, unanswered_threshold),
                        retry_seconds = coalesce($8, retry_seconds), notes = coalesce($9, notes),
                        active = coalesce($10, active), updated_at = $11
                    WHERE id = $1 RETURNING {COLUMNS}""",
                plan_id,
                schedule.value,
                days if schedule is Schedule.WEEKLY else [],
                time_of_day if schedule is Schedule.WEEKLY else None,
                interval if schedule is Schedule.INTERVAL else None,
                fields.starts_at,
                fields.unanswered_threshold,
                fields.retry_seconds,
                fields.notes,
                fields.active,
                now,
            )
            assert row is not None
            updated = await self._arm(conn, CarePlan.from_row(row), now)
            kind = "care_plan.updated"
            if fields.active is not None and fields.active != plan.active:
                kind = "care_plan.resumed" if fields.active else "care_plan.paused"
            events.append(await _plan_event(conn, updated, kind, actor, now))
            return updated

        return await self._run(work)

    async def set_active(self, plan_id: int, active: bool, actor: str) -> CarePlan:
        return await self.update(plan_id, PlanFields(active=active), actor)

    async def _arm(self, conn: Conn, plan: CarePlan, now: dt.datetime) -> CarePlan:
        """The plan's one pending due deadline, from its schedule (none while paused)."""
        await cancel_deadlines(conn, subject_type="care_plan", subject_id=plan.id, kinds=(DUE,), at=now)
        if not plan.active:
            await cancel_tasks(
                conn, "care_plan", plan.id, why="paused", at=now, reasons=(TaskReason.CARE_PLAN,)
            )
        return await arm_next(conn, plan, self.runtime.tz, now - dt.timedelta(microseconds=1))


async def arm_next(conn: Conn, plan: CarePlan, tz: ZoneInfo, after: dt.datetime) -> CarePlan:
    due = next_due(plan, tz, after) if plan.active else None
    if due is not None:
        await schedule_deadline(
            conn,
            kind=DUE,
            subject_type="care_plan",
            subject_id=plan.id,
            due_at=due,
            payload={"slot": due.isoformat()},
        )
    row = await conn.fetchrow(
        f"UPDATE care_plans SET next_due_at = $2 WHERE id = $1 RETURNING {COLUMNS}", plan.id, due
    )
    assert row is not None
    return CarePlan.from_row(row)


async def _plan_event(conn: Conn, plan: CarePlan, kind: str, actor: str, at: dt.datetime) -> DomainEvent:
    return await append_event(
        conn,
        subject_type="care_plan",
        subject_id=plan.id,
        kind=kind,
        actor=actor,
        data={
            "resident_id": plan.resident_id,
            "next_due_at": plan.next_due_at.isoformat() if plan.next_due_at else None,
        },
        at=at,
    )


def register_care_plans(handlers: DeadlineHandlers, runtime: Runtime) -> None:
    """`care_plan.due`: a call task for this slot, and the next slot armed."""

    async def due(conn: Conn, deadline: Deadline, now: dt.datetime) -> list[DomainEvent]:
        plan = await get_plan(conn, deadline.subject_id, for_update=True)
        slot = dt.datetime.fromisoformat(str(deadline.payload["slot"]))
        if not plan.active or plan.next_due_at != slot:
            return []  # paused or re-armed since this deadline was written
        events: list[DomainEvent] = []
        calling = await conn.fetchval(
            """SELECT id FROM call_tasks WHERE subject_type = 'care_plan' AND subject_id = $1
               AND state IN ('scheduled', 'calling') LIMIT 1""",
            plan.id,
        )
        # A call still being tried (retries longer than the plan's period) is this slot's call too.
        if calling is None:
            _, event = await schedule_task(
                conn,
                NewTask(
                    reason=TaskReason.CARE_PLAN,
                    purpose=TaskPurpose.CARE_CALL,
                    resident_id=plan.resident_id,
                    subject_type="care_plan",
                    subject_id=plan.id,
                    due_at=now,
                    max_tries=plan.unanswered_threshold if plan.retry_seconds > 0 else 1,
                    retry_seconds=plan.retry_seconds,
                    context_id=uuid.uuid4(),
                ),
                actor=ACTOR,
                at=now,
            )
            events.append(event)
            await conn.execute("UPDATE care_plans SET last_called_at = $2 WHERE id = $1", plan.id, now)
        await arm_next(conn, plan, runtime.tz, max(slot, now))
        return events

    handlers.register(DUE, due)


class CarePlanHooks(TaskHooks):
    """A care call's answer resets the plan's count; N unanswered in a row raise an inactivity alert."""

    # a plan calls at the times the resident agreed to, whatever the hour
    quiet_hours = False

    def __init__(self, alert_desk: AlertDesk) -> None:
        self.alert_desk = alert_desk

    async def wanted(self, conn: Conn, task: CallTask) -> bool:
        return bool(await conn.fetchval("SELECT active FROM care_plans WHERE id = $1", task.subject_id))

    async def answered(
        self, conn: Conn, events: list[DomainEvent], task: CallTask, answer: Answer, now: dt.datetime
    ) -> str:
        await conn.execute(
            "UPDATE care_plans SET unanswered_in_a_row = 0, last_answered_at = $2 WHERE id = $1",
            task.subject_id,
            now,
        )
        return "answered"

    async def unanswered(
        self, conn: Conn, events: list[DomainEvent], task: CallTask, why: str, now: dt.datetime
    ) -> str | None:
        row = await conn.fetchrow(
            """UPDATE care_plans SET unanswered_in_a_row = unanswered_in_a_row + 1 WHERE id = $1
               RETURNING unanswered_in_a_row, unanswered_threshold, resident_id""",
            task.subject_id,
        )
        assert row is not None
        if row["unanswered_in_a_row"] < row["unanswered_threshold"]:
            return None
        raised = await self.alert_desk.raise_alert(
            conn,
            source=AlertSource.CARE_PLAN,
            kind=AlertKind.INACTIVITY,
            resident_id=row["resident_id"],
            context={"care_plan_id": task.subject_id, "unanswered": row["unanswered_in_a_row"], "last": why},
            actor=Actor(ACTOR),
            context_id=task.context_id,
            at=now,
        )
        events.extend(raised.events)
        # the alert is the operators' now; the count starts again for the calls after it
        await conn.execute("UPDATE care_plans SET unanswered_in_a_row = 0 WHERE id = $1", task.subject_id)
        return f"inactivity alert {raised.alert.id}"

    async def exhausted(
        self, conn: Conn, events: list[DomainEvent], task: CallTask, why: str, now: dt.datetime
    ) -> bool:
        return False  # below the threshold: the next scheduled call goes on counting

    def manual_text(self, task: CallTask, why: str) -> tuple[str, str]:
        return (
            f"关爱计划 {task.subject_id} 的关爱电话无法拨出（{why}），请人工致电老人。",
            f"care plan {task.subject_id}: the care call could not be placed ({why}); "
            "please call the resident.",
        )
