"""Call tasks: the outbound calls the service lane wants made, as rows.

A follow-up rating call after a visit (回访), a care plan's care call, a reassurance call
while a device is repaired, a follow-up call after an alert: each is a `call_tasks` row
with how often it may be tried, and a `call_task.place` deadline for when. What happens
when it comes due (the call placed, its result read, tried again, or handed to an
operator) is in dispatch/call_task_steps.py; this module only writes and reads the rows,
in the caller's transaction, so a task exists exactly when the change that wanted it
committed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from dispatch.database import Conn
from dispatch.deadlines import cancel_deadlines, schedule_deadline
from dispatch.events import DomainEvent, append_event

PLACE = "call_task.place"
CHECK = "call_task.check"


class TaskReason(StrEnum):
    ORDER_FOLLOW_UP = "order_follow_up"
    CARE_PLAN = "care_plan"
    REPAIR_REASSURANCE = "repair_reassurance"
    ALERT_FOLLOW_UP = "alert_follow_up"


class TaskPurpose(StrEnum):
    """The IVR the call goes into (the call_attempts purpose)."""

    CARE_CALL = "care_call"
    RATING = "rating"


class TaskState(StrEnum):
    SCHEDULED = "scheduled"
    CALLING = "calling"
    DONE = "done"
    OPERATOR = "operator"
    CANCELLED = "cancelled"

    @property
    def open(self) -> bool:
        return self in (TaskState.SCHEDULED, TaskState.CALLING)


@dataclass(frozen=True)
class CallTask:
    id: int
    reason: TaskReason
    purpose: TaskPurpose
    resident_id: int
    subject_type: str
    subject_id: int
    alert_id: int | None
    context_id: uuid.UUID
    state: TaskState
    outcome: str
    tries: int
    max_tries: int
    retry_seconds: int
    due_at: dt.datetime
    attempt_id: int | None
    digit: str | None
    created_at: dt.datetime
    created_by: str
    finished_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> CallTask:
        values = {name: row[name] for name in cls.__dataclass_fields__}
        values["reason"] = TaskReason(values["reason"])
        values["purpose"] = TaskPurpose(values["purpose"])
        values["state"] = TaskState(values["state"])
        return cls(**values)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            data[name] = value.isoformat() if isinstance(value, dt.datetime) else value
        data["context_id"] = str(self.context_id)
        return data


COLUMNS = """id, reason, purpose, resident_id, subject_type, subject_id, alert_id, context_id, state, outcome,
    tries, max_tries, retry_seconds, due_at, attempt_id, digit, created_at, created_by, finished_at"""


async def get_task(conn: Conn, task_id: int, *, for_update: bool = False) -> CallTask | None:
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM call_tasks WHERE id = $1" + (" FOR UPDATE" if for_update else ""), task_id
    )
    return CallTask.from_row(row) if row else None


async def tasks_of(conn: Conn, subject_type: str, subject_id: int, *, limit: int = 100) -> list[CallTask]:
    """A subject's tasks, newest first."""
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM call_tasks WHERE subject_type = $1 AND subject_id = $2
            ORDER BY id DESC LIMIT $3""",
        subject_type,
        subject_id,
        limit,
    )
    return [CallTask.from_row(r) for r in rows]


def outside_quiet_hours(when: dt.datetime, tz: ZoneInfo, start_hour: int, end_hour: int) -> dt.datetime:
    """`when`, or the end of the quiet hours it falls in (local time): nobody is rung at night
    for a rating. Equal hours mean no quiet hours."""
    if start_hour == end_hour:
        return when
    local = when.astimezone(tz)
    hour = local.hour
    quiet = (
        (start_hour <= hour < end_hour) if start_hour < end_hour else (hour >= start_hour or hour < end_hour)
    )
    if not quiet:
        return when
    end = local.replace(hour=end_hour, minute=0, second=0, microsecond=0)
    if end <= local:
        end = (local + dt.timedelta(days=1)).replace(hour=end_hour, minute=0, second=0, microsecond=0)
    return end.astimezone(dt.UTC)


@dataclass(frozen=True)
class NewTask:
    reason: TaskReason
    purpose: TaskPurpose
    resident_id: int
    subject_type: str
    subject_id: int
    due_at: dt.datetime
    max_tries: int
    retry_seconds: int
    context_id: uuid.UUID
    alert_id: int | None = None


async def schedule_task(
    conn: Conn, new: NewTask, *, actor: str, at: dt.datetime
) -> tuple[CallTask, DomainEvent]:
    """Store a task and its `call_task.place` deadline; the event goes on the task's timeline."""
    row = await conn.fetchrow(
        f"""INSERT INTO call_tasks (reason, purpose, resident_id, subject_type, subject_id, alert_id,
                context_id, max_tries, retry_seconds, due_at, created_at, created_by)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING {COLUMNS}""",
        new.reason.value,
        new.purpose.value,
        new.resident_id,
        new.subject_type,
        new.subject_id,
        new.alert_id,
        new.context_id,
        new.max_tries,
        new.retry_seconds,
        new.due_at,
        at,
        actor,
    )
    assert row is not None
    task = CallTask.from_row(row)
    await schedule_deadline(
        conn, kind=PLACE, subject_type="call_task", subject_id=task.id, due_at=task.due_at
    )
    event = await task_event(
        conn, task, "call_task.scheduled", actor, at, {"due_at": task.due_at.isoformat()}
    )
    return task, event


async def task_event(
    conn: Conn, task: CallTask, kind: str, actor: str, at: dt.datetime, data: dict[str, Any] | None = None
) -> DomainEvent:
    """An event on the task's own timeline; its context id ties it to the order, plan or alert."""
    return await append_event(
        conn,
        subject_type="call_task",
        subject_id=task.id,
        kind=kind,
        actor=actor,
        context_id=task.context_id,
        data={
            "reason": task.reason.value,
            "subject_type": task.subject_type,
            "subject_id": task.subject_id,
            "resident_id": task.resident_id,
            **(data or {}),
        },
        at=at,
    )


async def finish_task(
    conn: Conn, task: CallTask, state: TaskState, outcome: str, at: dt.datetime, *, digit: str | None = None
) -> CallTask:
    row = await conn.fetchrow(
        f"""UPDATE call_tasks SET state = $2, outcome = $3, finished_at = $4, digit = coalesce($5, digit)
            WHERE id = $1 RETURNING {COLUMNS}""",
        task.id,
        state.value,
        outcome,
        at,
        digit,
    )
    assert row is not None
    await cancel_deadlines(conn, subject_type="call_task", subject_id=task.id, at=at)
    return CallTask.from_row(row)


async def cancel_tasks(
    conn: Conn,
    subject_type: str,
    subject_id: int,
    *,
    why: str,
    at: dt.datetime,
    reasons: tuple[TaskReason, ...],
) -> int:
    """Cancel a subject's tasks not yet placed (a call already ringing is left to finish and is
    then found not wanted); returns how many."""
    rows = await conn.fetch(
        """UPDATE call_tasks SET state = 'cancelled', outcome = $3, finished_at = $4
           WHERE subject_type = $1 AND subject_id = $2 AND state = 'scheduled' AND reason = ANY($5::text[])
           RETURNING id""",
        subject_type,
        subject_id,
        why,
        at,
        [r.value for r in reasons],
    )
    for row in rows:
        await cancel_deadlines(conn, subject_type="call_task", subject_id=row["id"], at=at)
    return len(rows)


@dataclass(frozen=True)
class TaskTry:
    """One try of a task as the API shows it: the call_attempts row's facts."""

    attempt_id: int
    action_id: str
    state: str
    result: str | None
    reason: str
    digit: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "attempt_id": self.attempt_id,
            "action_id": self.action_id,
            "state": self.state,
            "result": self.result,
            "reason": self.reason,
            "digit": self.digit,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


async def tries_of(conn: Conn, task_ids: list[int]) -> dict[int, list[TaskTry]]:
    """Every call placed for these tasks, oldest first, by task."""
    rows = await conn.fetch(
        """SELECT subject_id, id AS attempt_id, action_id, state, result, reason, digit, created_at,
                  finished_at
           FROM call_attempts WHERE subject_type = 'call_task' AND subject_id = ANY($1::bigint[])
           ORDER BY id""",
        task_ids,
    )
    found: dict[int, list[TaskTry]] = {task_id: [] for task_id in task_ids}
    for row in rows:
        values = dict(row.items())
        found[int(values.pop("subject_id"))].append(TaskTry(**values))
    return found
