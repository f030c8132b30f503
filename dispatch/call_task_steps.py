"""What a call task does when it comes due: placed, its result read, tried again or handed over.

Two deadline kinds (dispatch/deadlines.py fires them, so every step survives kill -9):

- `call_task.place`: the task's due time. A try is placed with `place_care_call` (subject
  `call_task`): the attempt row is committed by the originator before the Originate goes out,
  then a `call_task.check` deadline is armed for when its result must be known (the try's
  ring time plus `orders.call_result_grace_seconds`). No telephony (no `[[asterisk]]`) or no
  phone number: an operator is asked at once; a configured PBX whose link is down: tried again
  after `retry_seconds` like an unanswered call (an operator once the tries are used).
- `call_task.check`: reads the try's `call_attempts` row — the result and the IVR digit the
  recorder committed — and acts: answered (for a rating call: a digit 1-5) → the reason's
  `answered`; otherwise tried again after `retry_seconds` until `max_tries`, then the reason's
  `exhausted` (by default a notice asking an operator to call by hand).

The bus only makes this prompt: `BusWatch` brings the check forward to now when
`call_attempt.finished` (or, for a rating call, `call_attempt.digit`) arrives. Acting on the
event itself would lose the result when the process dies between the report and the action;
the check deadline re-reads the committed row whenever it fires, before or after a restart,
and fires once.

Placing runs on its own connection inside the firing transaction (the Originate must follow
the attempt's commit). Should the firing then roll back, the next firing finds the try it
placed (an attempt of this task newer than the one it recorded) and adopts it instead of
ringing the resident twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from dispatch.call_tasks import (
    CHECK,
    PLACE,
    CallTask,
    TaskPurpose,
    TaskReason,
    TaskState,
    finish_task,
    get_task,
    outside_quiet_hours,
    task_event,
)
from dispatch.components import Health
from dispatch.database import Conn
from dispatch.deadlines import Deadline, DeadlineHandlers, bring_forward, schedule_deadline
from dispatch.events import DomainEvent, Listener, Subscription
from dispatch.notices import Severity, raise_notice
from dispatch.runtime import Runtime
from telephony.originate import (
    AttemptResult,
    CallAttempt,
    CallError,
    Originator,
    Purpose,
    TelephonyUnavailable,
    get_attempt,
    place_care_call,
)

log = logging.getLogger(__name__)

ACTOR = "system:call-tasks"
RATINGS = {"1": 1, "2": 2, "3": 3, "4": 4, "5": 5}


@dataclass(frozen=True)
class Answer:
    """A try that reached the resident: the digit pressed, and as a rating when it is one."""

    attempt: CallAttempt
    digit: str | None
    rating: int | None


def answer_of(task: CallTask, attempt: CallAttempt) -> Answer | None:
    """None when the try did not reach the resident. A rating call counts only with a digit 1-5
    (an invalid digit is asked again); a care call counts when answered."""
    digit = attempt.digit
    if task.purpose is TaskPurpose.RATING:
        rating = RATINGS.get(digit or "")
        return Answer(attempt, digit, rating) if rating is not None else None
    if attempt.result is AttemptResult.ANSWERED or digit:
        return Answer(attempt, digit, None)
    return None


def why_unanswered(task: CallTask, attempt: CallAttempt) -> str:
    if attempt.result is AttemptResult.ANSWERED or attempt.digit:
        return "no valid digit" if attempt.digit else "answered, no digit pressed"
    return attempt.result.value if attempt.result else "no result reported"


class TaskHooks:
    """What a task's reason makes of its calls; the defaults suit a call whose answer is enough."""

    # Calls of this reason wait out the quiet hours (a care plan calls when its plan says).
    quiet_hours = True

    async def wanted(self, conn: Conn, task: CallTask) -> bool:
        """Before each try: is the call still worth making (the order not confirmed by hand)?"""
        return True

    async def answered(
        self, conn: Conn, events: list[DomainEvent], task: CallTask, answer: Answer, now: dt.datetime
    ) -> str:
        """The resident was reached; returns the task's outcome."""
        return "answered"

    async def unanswered(
        self, conn: Conn, events: list[DomainEvent], task: CallTask, why: str, now: dt.datetime
    ) -> str | None:
        """A try that did not reach the resident; an outcome ends the task (done) at once."""
        return None

    async def exhausted(
        self, conn: Conn, events: list[DomainEvent], task: CallTask, why: str, now: dt.datetime
    ) -> bool:
        """Every try used: True hands the task to an operator (a notice), False ends it as done."""
        return True

    def manual_text(self, task: CallTask, why: str) -> tuple[str, str]:
        return (
            f"电话未能接通（{why}），请人工致电老人。",
            f"the call did not get through ({why}); please call the resident.",
        )


class CallTaskSteps:
    """The two deadline steps of every call task, and the bus listener that hurries them."""

    def __init__(self, runtime: Runtime, originator: Originator) -> None:
        self.runtime = runtime
        self.originator = originator
        self.hooks: dict[TaskReason, TaskHooks] = {}

    def add(self, reason: TaskReason, hooks: TaskHooks) -> None:
        if reason in self.hooks:
            raise ValueError(f"hooks for call task reason {reason.value!r} are already added")
        self.hooks[reason] = hooks

    def register(self, handlers: DeadlineHandlers) -> None:
        handlers.register(PLACE, self.place_due)
        handlers.register(CHECK, self.check_due)

    # -- call_task.place --------------------------------------------------------------------------

    async def place_due(self, conn: Conn, deadline: Deadline, now: dt.datetime) -> list[DomainEvent]:
        task = await get_task(conn, deadline.subject_id, for_update=True)
        if task is None or task.state is not TaskState.SCHEDULED:
            return []
        hooks = self.hooks[task.reason]
        events: list[DomainEvent] = []
        if not await hooks.wanted(conn, task):
            done = await finish_task(conn, task, TaskState.CANCELLED, "not needed any more", now)
            events.append(await task_event(conn, done, "call_task.cancelled", ACTOR, now))
            return events
        attempt = await self._placed_before(conn, task)
        if attempt is None:
            try:
                attempt = await place_care_call(
                    self.originator,
                    resident_id=task.resident_id,
                    purpose=Purpose(task.purpose.value),
                    subject_type="call_task",
                    subject_id=task.id,
                    requested_by=ACTOR,
                    context_id=task.context_id,
                    alert_id=task.alert_id,
                )
            except TelephonyUnavailable as exc:
                task = await self._tried(conn, task, exc.attempt.id)
                if self.originator.dialers and task.tries < task.max_tries:
                    # A PBX is configured but its link is down (a restart, a network blip): it is
                    # usually back within minutes, so try again later instead of handing every due
                    # call to an operator. Not the resident's silence: the hooks are not told.
                    events.append(
                        await task_event(
                            conn,
                            task,
                            "call_task.unanswered",
                            ACTOR,
                            now,
                            {
                                "why": "link down",
                                "attempt_id": exc.attempt.id,
                                "try": task.tries,
                                "of": task.max_tries,
                            },
                        )
                    )
                    await self._again(conn, task, hooks, now)
                    return events
                await self.hand_over(conn, events, task, "telephony unavailable", now)
                return events
            except CallError as exc:
                await self.hand_over(conn, events, task, str(exc), now)
                return events
        task = await self._tried(conn, task, attempt.id)
        grace = dt.timedelta(seconds=self.runtime.config.orders.call_result_grace_seconds)
        await schedule_deadline(
            conn,
            kind=CHECK,
            subject_type="call_task",
            subject_id=task.id,
            due_at=max(attempt.timeout_at, now) + grace,
            payload={"attempt_id": attempt.id},
        )
        return events

    async def _placed_before(self, conn: Conn, task: CallTask) -> CallAttempt | None:
        """A try placed by a firing that did not commit (the attempt commits on its own)."""
        attempt_id = await conn.fetchval(
            """SELECT id FROM call_attempts WHERE subject_type = 'call_task' AND subject_id = $1 AND id > $2
               ORDER BY id DESC LIMIT 1""",
            task.id,
            task.attempt_id or 0,
        )
        return await get_attempt(conn, attempt_id) if attempt_id is not None else None

    async def _tried(self, conn: Conn, task: CallTask, attempt_id: int) -> CallTask:
        row = await conn.fetchrow(
            """UPDATE call_tasks SET state = 'calling', tries = tries + 1, attempt_id = $2
               WHERE id = $1 RETURNING id""",
            task.id,
            attempt_id,
        )
        assert row is not None
        found = await get_task(conn, task.id)
        assert found is not None
        return found

    # -- call_task.check --------------------------------------------------------------------------

    async def check_due(self, conn: Conn, deadline: Deadline, now: dt.datetime) -> list[DomainEvent]:
        task = await get_task(conn, deadline.subject_id, for_update=True)
        attempt_id = int(deadline.payload["attempt_id"])
        if task is None or task.state is not TaskState.CALLING or task.attempt_id != attempt_id:
            return []
        attempt = await get_attempt(conn, attempt_id)
        assert attempt is not None
        hooks = self.hooks[task.reason]
        events: list[DomainEvent] = []
        answer = answer_of(task, attempt)
        if answer is not None:
            outcome = await hooks.answered(conn, events, task, answer, now)
            done = await finish_task(conn, task, TaskState.DONE, outcome, now, digit=answer.digit)
            events.append(
                await task_event(
                    conn,
                    done,
                    "call_task.answered",
                    ACTOR,
                    now,
                    {
                        "outcome": outcome,
                        "digit": answer.digit,
                        "attempt_id": attempt.id,
                        "tries": task.tries,
                    },
                )
            )
            return events
        why = why_unanswered(task, attempt)
        events.append(
            await task_event(
                conn,
                task,
                "call_task.unanswered",
                ACTOR,
                now,
                {"why": why, "attempt_id": attempt.id, "try": task.tries, "of": task.max_tries},
            )
        )
        ended = await hooks.unanswered(conn, events, task, why, now)
        if ended is not None:
            await finish_task(conn, task, TaskState.DONE, ended, now)
            return events
        if task.tries < task.max_tries:
            await self._again(conn, task, hooks, now)
            return events
        if await hooks.exhausted(conn, events, task, why, now):
            await self.hand_over(conn, events, task, f"{task.tries} tries: {why}", now)
        else:
            await finish_task(conn, task, TaskState.DONE, "unanswered", now)
        return events

    async def _again(self, conn: Conn, task: CallTask, hooks: TaskHooks, now: dt.datetime) -> None:
        due = now + dt.timedelta(seconds=task.retry_seconds)
        if hooks.quiet_hours:
            orders = self.runtime.config.orders
            due = outside_quiet_hours(due, self.runtime.tz, orders.quiet_start_hour, orders.quiet_end_hour)
        await conn.execute(
            "UPDATE call_tasks SET state = 'scheduled', due_at = $2 WHERE id = $1", task.id, due
        )
        await schedule_deadline(conn, kind=PLACE, subject_type="call_task", subject_id=task.id, due_at=due)

    async def hand_over(
        self, conn: Conn, events: list[DomainEvent], task: CallTask, why: str, now: dt.datetime
    ) -> None:
        """An operator makes the call by hand: a notice about the task's subject."""
        zh, en = self.hooks[task.reason].manual_text(task, why)
        events.append(
            await raise_notice(
                conn,
                kind=f"{task.reason.value}.manual",
                severity=Severity.WARNING,
                text=f"{zh} / {en}",
                subject_type=task.subject_type,
                subject_id=task.subject_id,
                context_id=task.context_id,
                data={
                    "task_id": task.id,
                    "reason": task.reason.value,
                    "why": why,
                    "resident_id": task.resident_id,
                    "audience": "operators",
                },
                at=now,
            )
        )
        done = await finish_task(conn, task, TaskState.OPERATOR, why, now)
        events.append(await task_event(conn, done, "call_task.to_operator", ACTOR, now, {"why": why}))

    # -- the bus ------------------------------------------------------------------------------------

    async def on_attempt_event(self, event: DomainEvent) -> None:
        """A try's result arrived: its check is due now (the row was committed before this event)."""
        data = event.data
        if data.get("subject_type") != "call_task" or data.get("subject_id") is None:
            return
        if event.kind == "call_attempt.finished":
            if data.get("purpose") == Purpose.RATING.value and data.get("result") == "answered":
                return  # the resident picked up: the digit is still to come
        elif event.kind != "call_attempt.digit":
            return
        task_id, attempt_id = int(data["subject_id"]), int(data["attempt_id"])
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            # The firing that placed this try holds the task's row lock until its check
            # deadline is committed: wait for it, so the check is there to bring forward.
            await conn.execute("SELECT 1 FROM call_tasks WHERE id = $1 FOR UPDATE", task_id)
            await bring_forward(
                conn,
                kind=CHECK,
                subject_type="call_task",
                subject_id=task_id,
                now=self.runtime.clock(),
                payload={"attempt_id": attempt_id},
            )


@dataclass
class BusWatch:
    """A component holding the service lane's bus subscriptions: (name, listener, kind prefix).

    Each listener only persists something and is quick, so the subscriptions are lossless."""

    runtime: Runtime
    listeners: list[tuple[str, Listener, str]]
    name: str = "service-watch"
    _subscriptions: list[Subscription] = field(default_factory=list)

    async def start(self) -> None:
        for name, listener, prefix in self.listeners:
            self._subscriptions.append(
                self.runtime.bus.subscribe(name, listener, prefix=prefix, lossless=True)
            )

    async def stop(self) -> None:
        while self._subscriptions:
            await self._subscriptions.pop().close()

    async def health(self) -> Health:
        running = all(not s.task.done() for s in self._subscriptions)
        return Health(
            running, {"status": "ok" if running else "stopped", "listeners": len(self._subscriptions)}
        )
