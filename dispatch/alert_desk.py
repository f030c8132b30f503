"""The emergency lane's actions: each one a transaction that moves the alert and
does everything that goes with the move — deadlines armed or cancelled, the team's
SMS job opened or closed, the family told — and publishes the events after commit.

`raise_alert` is the one entry the alarm, telephony and API paths use. The
escalation ladder (dispatch/escalation.py) and a team's SMS replies call the same
actions as operators do, with their own actor names.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from dispatch import family
from dispatch.alerts import (
    OPEN_STATES,
    Alert,
    AlertError,
    AlertKind,
    AlertSource,
    IllegalTransition,
    Outcome,
    Raised,
    ReasonRequired,
    get_alert,
    insert_or_join_alert,
    note,
    transition,
)
from dispatch.config import AlertsConfig
from dispatch.database import Conn
from dispatch.deadlines import NewDeadline, cancel_deadlines, schedule_deadline, schedule_deadlines
from dispatch.events import DomainEvent
from dispatch.notices import Severity, raise_notice
from dispatch.runtime import Runtime
from dispatch.team_choice import rank_teams, suggested
from providers.job_page import job_link
from providers.jobs import Job, close_jobs, open_job
from providers.outbox import queue_sms
from providers.templates import cancellation, emergency_dispatch

T = TypeVar("T")

# Deadline kinds of the ladder.
ACK_SUPERVISOR = "alert.ack_supervisor"
ACK_ALL = "alert.ack_all_operators"
TEAM_SILENT = "alert.team_silent"
ON_SCENE_OVERDUE = "alert.on_scene_overdue"
ACK_STEPS = (ACK_SUPERVISOR, ACK_ALL)
JOB_KIND = "alert_dispatch"

KIND_ZH = {
    AlertKind.SOS: "紧急呼叫",
    AlertKind.MEDICAL: "医疗求助",
    AlertKind.FALL: "跌倒",
    AlertKind.FIRE: "火警/烟感",
    AlertKind.GAS: "燃气泄漏",
    AlertKind.WATER: "漏水",
    AlertKind.INACTIVITY: "长时间无活动",
    AlertKind.TAMPER: "设备被拆",
    AlertKind.OTHER: "求助",
}


class NoTeamAvailable(AlertError):
    code = "no_team_available"


@dataclass(frozen=True)
class Actor:
    """Who did it, as written on the timeline: `user:wangfang`, `team:T03`, `system:escalation`."""

    name: str

    @classmethod
    def user(cls, username: str) -> Actor:
        return cls(f"user:{username}")

    @classmethod
    def team(cls, code: str) -> Actor:
        return cls(f"team:{code}")


SYSTEM = Actor("system:escalation")


class AlertDesk:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def settings(self) -> AlertsConfig:
        return self.runtime.config.alerts

    async def _run(self, work: Callable[[Conn, list[DomainEvent]], Awaitable[T]]) -> T:
        """One transaction; its events are published only after it committed."""
        events: list[DomainEvent] = []
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            result = await work(conn, events)
        await self.runtime.bus.publish(*events)
        return result

    # -- raising ------------------------------------------------------------------------------

    async def raise_alert(
        self,
        conn: Conn,
        *,
        source: AlertSource,
        kind: AlertKind,
        resident_id: int | None = None,
        device_id: int | None = None,
        context: dict[str, Any] | None = None,
        actor: Actor,
        context_id: uuid.UUID | None = None,
        at: dt.datetime | None = None,
    ) -> Raised:
        """Open an alert (or join the open one) in the caller's transaction; arm the ladder when new.

        The caller publishes `Raised.events` after its commit (alarm intake commits the
        alarm and its alert together before it acknowledges the sender).
        """
        now = at or self.runtime.clock()
        raised = await insert_or_join_alert(
            conn,
            source=source,
            kind=kind,
            resident_id=resident_id,
            device_id=device_id,
            context=context or {},
            actor=actor.name,
            at=now,
            context_id=context_id,
        )
        if raised.created:
            raised_at = raised.alert.raised_at
            await schedule_deadlines(
                conn,
                [
                    NewDeadline(kind, "alert", raised.alert.id, raised_at + dt.timedelta(seconds=seconds))
                    for kind, seconds in (
                        (ACK_SUPERVISOR, self.settings.ack_supervisor_seconds),
                        (ACK_ALL, self.settings.ack_all_operators_seconds),
                    )
                ],
            )
        return raised

    async def raise_and_publish(self, **kwargs: Any) -> Raised:
        async def work(conn: Conn, events: list[DomainEvent]) -> Raised:
            raised = await self.raise_alert(conn, **kwargs)
            events.extend(raised.events)
            return raised

        return await self._run(work)

    # -- operator actions ---------------------------------------------------------------------

    async def acknowledge(
        self, alert_id: int, actor: Actor, *, real: bool = False, reason: str = ""
    ) -> Alert:
        """Take the alert. `real=True` (confirmed on the phone) tells the family at once."""

        async def work(conn: Conn, events: list[DomainEvent]) -> Alert:
            now = self.runtime.clock()
            moved = await transition(conn, alert_id, "acknowledge", actor=actor.name, at=now, reason=reason)
            events.append(moved.event)
            await cancel_deadlines(conn, subject_type="alert", subject_id=alert_id, kinds=ACK_STEPS, at=now)
            if real:
                events.extend(await family.notify_raised(conn, self.runtime, moved.alert, now))
            return moved.alert

        return await self._run(work)

    async def dispatch(
        self, alert_id: int, actor: Actor, *, team_id: int | None = None, reason: str = ""
    ) -> Alert:
        """Send a team: the suggested one, or `team_id` when the operator chose another."""

        async def work(conn: Conn, events: list[DomainEvent]) -> Alert:
            return await self.dispatch_in(conn, events, alert_id, actor, team_id=team_id, reason=reason)

        return await self._run(work)

    async def dispatch_in(
        self,
        conn: Conn,
        events: list[DomainEvent],
        alert_id: int,
        actor: Actor,
        *,
        team_id: int | None,
        reason: str,
    ) -> Alert:
        now = self.runtime.clock()
        chosen_by = "operator's choice" if team_id is not None else "suggested"
        if team_id is None:
            best = suggested(await rank_teams(conn, alert_id, now, self.runtime.tz))
            if best is None:
                raise NoTeamAvailable(f"alert {alert_id}: no team is on duty, free and covering the district")
            team_id = best.team_id
        elif not await conn.fetchval(
            "SELECT 1 FROM emergency_teams WHERE id = $1 AND status = 'active'", team_id
        ):
            raise AlertError(f"team {team_id} does not exist or is not active")
        moved = await transition(
            conn,
            alert_id,
            "dispatch",
            actor=actor.name,
            at=now,
            reason=reason,
            value=team_id,
            data={"team_id": team_id, "chosen": chosen_by},
        )
        events.append(moved.event)
        alert = moved.alert
        previous = await conn.fetchrow(
            """UPDATE alert_dispatches SET superseded_at = $2
               WHERE alert_id = $1 AND superseded_at IS NULL RETURNING team_id""",
            alert_id,
            now,
        )
        if previous is not None:
            closed = await close_jobs(
                conn,
                subject_type="alert",
                subject_id=alert_id,
                reason="another team sent",
                at=now,
                skip_locked=True,
            )
            await self._send_stand_down(conn, alert, closed, "已改派其他队")
        await conn.execute(
            """INSERT INTO alert_dispatches (alert_id, team_id, dispatched_at, dispatched_by, reason)
               VALUES ($1, $2, $3, $4, $5)""",
            alert_id,
            team_id,
            now,
            actor.name,
            reason or chosen_by,
        )
        await cancel_deadlines(
            conn, subject_type="alert", subject_id=alert_id, kinds=(TEAM_SILENT, ON_SCENE_OVERDUE), at=now
        )
        await schedule_deadline(
            conn,
            kind=TEAM_SILENT,
            subject_type="alert",
            subject_id=alert_id,
            due_at=now + dt.timedelta(seconds=self.settings.team_ack_seconds),
            payload={"team_id": team_id},
        )
        await self._send_dispatch(conn, events, alert, team_id, now)
        if alert.family_notified_at is None:
            events.extend(await family.notify_raised(conn, self.runtime, alert, now))
        return alert

    async def _team_mobiles(self, conn: Conn, team_id: int) -> list[str]:
        """The team's phones that can receive SMS (the duty phone and members' mobiles, no landlines)."""
        rows = await conn.fetch(
            """SELECT phone_e164 FROM emergency_teams WHERE id = $1
               UNION ALL (SELECT phone_e164 FROM team_members WHERE team_id = $1 ORDER BY id)""",
            team_id,
        )
        phones = dict.fromkeys(r["phone_e164"] for r in rows)
        return [p for p in phones if self.runtime.phones.kind(p) == "mobile"]

    async def _send_dispatch(
        self, conn: Conn, events: list[DomainEvent], alert: Alert, team_id: int, now: dt.datetime
    ) -> Job:
        """Open the team's job (a fresh code) and text it to every mobile of the team."""
        job = await open_job(
            conn,
            kind=JOB_KIND,
            subject_type="alert",
            subject_id=alert.id,
            party_type="team",
            party_id=team_id,
            expires_at=now + dt.timedelta(hours=self.settings.job_hours),
            context_id=alert.context_id,
        )
        who = await conn.fetchrow(
            """SELECT r.name, r.address, r.chronic_conditions, c.name AS community
               FROM residents r LEFT JOIN communities c ON c.id = r.community_id WHERE r.id = $1""",
            alert.resident_id,
        )
        body = emergency_dispatch(
            code=job.code,
            resident_name=who["name"] if who else "未知",
            address=f"{who['community'] or ''}{who['address']}"
            if who
            else str(alert.context.get("address", "")),
            condition=f"{KIND_ZH[alert.kind]} {who['chronic_conditions'] if who else ''}".strip(),
            link=job_link(self.runtime, job),
            language=self.runtime.config.locale.language,
        )
        mobiles = await self._team_mobiles(conn, team_id)
        if not mobiles:
            # The job exists but nobody will read it: someone must phone the team now.
            events.append(
                await raise_notice(
                    conn,
                    kind="alert.team_unreachable_by_sms",
                    severity=Severity.CRITICAL,
                    text=(
                        f"警情 {alert.id}：该应急队没有可接收短信的手机，请立即电话通知。"
                        f" / Alert {alert.id}: the team has no mobile for SMS; phone the team now."
                    ),
                    subject_type="alert",
                    subject_id=alert.id,
                    context_id=alert.context_id,
                    at=now,
                )
            )
        for phone in mobiles:
            await queue_sms(
                conn,
                phone,
                body,
                purpose="dispatch",
                idempotency_key=f"job:{job.id}:dispatch:{phone}",
                context_id=alert.context_id,
                subject_type="alert",
                subject_id=alert.id,
            )
        return job

    async def _send_stand_down(self, conn: Conn, alert: Alert, jobs: list[Job], why: str) -> None:
        """Tell a team whose job was closed (another team sent, alert cancelled) not to go."""
        for job in jobs:
            body = cancellation(
                code=job.code, item="紧急任务", reason=why, language=self.runtime.config.locale.language
            )
            for phone in await self._team_mobiles(conn, job.party_id):
                await queue_sms(
                    conn,
                    phone,
                    body,
                    purpose="cancellation",
                    idempotency_key=f"job:{job.id}:cancel:{phone}",
                    context_id=alert.context_id,
                    subject_type="alert",
                    subject_id=alert.id,
                )

    async def team_acknowledge(self, alert_id: int, actor: Actor) -> Alert:
        async def work(conn: Conn, events: list[DomainEvent]) -> Alert:
            return await self.team_acknowledge_in(conn, events, alert_id, actor)

        return await self._run(work)

    async def team_acknowledge_in(
        self, conn: Conn, events: list[DomainEvent], alert_id: int, actor: Actor
    ) -> Alert:
        now = self.runtime.clock()
        moved = await transition(conn, alert_id, "team_acknowledge", actor=actor.name, at=now)
        events.append(moved.event)
        await conn.execute(
            "UPDATE alert_dispatches SET acknowledged_at = $2 WHERE alert_id = $1 AND superseded_at IS NULL",
            alert_id,
            now,
        )
        await cancel_deadlines(conn, subject_type="alert", subject_id=alert_id, kinds=(TEAM_SILENT,), at=now)
        events.extend(await family.notify_team_on_way(conn, self.runtime, moved.alert, now))
        await schedule_deadline(
            conn,
            kind=ON_SCENE_OVERDUE,
            subject_type="alert",
            subject_id=alert_id,
            due_at=now + dt.timedelta(seconds=self.settings.on_scene_seconds),
        )
        return moved.alert

    async def on_scene(self, alert_id: int, actor: Actor) -> Alert:
        async def work(conn: Conn, events: list[DomainEvent]) -> Alert:
            return await self.on_scene_in(conn, events, alert_id, actor)

        return await self._run(work)

    async def on_scene_in(self, conn: Conn, events: list[DomainEvent], alert_id: int, actor: Actor) -> Alert:
        now = self.runtime.clock()
        moved = await transition(conn, alert_id, "on_scene", actor=actor.name, at=now)
        events.append(moved.event)
        await conn.execute(
            """UPDATE alert_dispatches SET acknowledged_at = coalesce(acknowledged_at, $2)
               WHERE alert_id = $1 AND superseded_at IS NULL""",
            alert_id,
            now,
        )
        await cancel_deadlines(
            conn, subject_type="alert", subject_id=alert_id, kinds=(TEAM_SILENT, ON_SCENE_OVERDUE), at=now
        )
        return moved.alert

    async def resolve(self, alert_id: int, actor: Actor, *, outcome: Outcome, reason: str = "") -> Alert:
        async def work(conn: Conn, events: list[DomainEvent]) -> Alert:
            return await self.close_in(
                conn, events, alert_id, actor, "resolve", outcome=outcome, reason=reason
            )

        return await self._run(work)

    async def cancel(self, alert_id: int, actor: Actor, *, reason: str, false_alarm: bool = False) -> Alert:
        async def work(conn: Conn, events: list[DomainEvent]) -> Alert:
            return await self.close_in(
                conn, events, alert_id, actor, "cancel", outcome=None, reason=reason, false_alarm=false_alarm
            )

        return await self._run(work)

    async def close_in(
        self,
        conn: Conn,
        events: list[DomainEvent],
        alert_id: int,
        actor: Actor,
        action: str,
        *,
        outcome: Outcome | None,
        reason: str,
        false_alarm: bool = False,
    ) -> Alert:
        now = self.runtime.clock()
        current = await get_alert(conn, alert_id, for_update=True)
        if current.escalations and not reason.strip() and actor.name.startswith("user:"):
            raise ReasonRequired(
                f"alert {alert_id} was escalated {current.escalations} time(s): say why when closing it"
            )
        moved = await transition(
            conn,
            alert_id,
            action,
            actor=actor.name,
            at=now,
            reason=reason,
            value=outcome.value if outcome else None,
            data={"outcome": outcome.value} if outcome else {"false_alarm": false_alarm},
        )
        events.append(moved.event)
        alert = moved.alert
        await cancel_deadlines(conn, subject_type="alert", subject_id=alert_id, at=now)
        closed = await close_jobs(
            conn, subject_type="alert", subject_id=alert_id, reason=action, at=now, skip_locked=True
        )
        if action == "cancel":
            await self._send_stand_down(conn, alert, closed, "警情已取消")
        if (outcome is Outcome.FALSE_ALARM or false_alarm) and alert.device_id is not None:
            await conn.execute(
                "UPDATE devices SET false_alarms = false_alarms + 1 WHERE id = $1", alert.device_id
            )
        events.extend(await family.notify_closed(conn, self.runtime, alert, now))
        if outcome is Outcome.NO_ACCESS:
            events.extend(await family.no_access(conn, self.runtime, alert, now))
        return alert

    async def handoff_120(self, alert_id: int, actor: Actor, *, reason: str = "") -> Alert:
        """Record the hand-off to 120 (the ambulance service) with its time."""

        async def work(conn: Conn, events: list[DomainEvent]) -> Alert:
            now = self.runtime.clock()
            row = await conn.fetchval(
                """UPDATE alerts SET handoff_120_at = coalesce(handoff_120_at, $2)
                   WHERE id = $1 AND state = ANY($3::text[]) AND state <> 'raised' RETURNING id""",
                alert_id,
                now,
                list(OPEN_STATES),
            )
            alert = await get_alert(conn, alert_id)
            if row is None:
                raise IllegalTransition(alert_id, "hand off to 120", alert.state)
            events.append(
                await note(
                    conn, alert_id, kind="alert.handoff_120", actor=actor.name, at=now, reason=reason, data={}
                )
            )
            if alert.family_notified_at is None:
                events.extend(await family.notify_raised(conn, self.runtime, alert, now))
            return alert

        return await self._run(work)

    async def add_note(self, alert_id: int, actor: Actor, text: str) -> DomainEvent:
        async def work(conn: Conn, events: list[DomainEvent]) -> DomainEvent:
            event = await note(
                conn,
                alert_id,
                kind="alert.note",
                actor=actor.name,
                at=self.runtime.clock(),
                reason=text,
                data={},
            )
            events.append(event)
            return event

        return await self._run(work)

    async def dispatch_next_team_in(
        self, conn: Conn, events: list[DomainEvent], alert: Alert, why: str
    ) -> Alert | None:
        """Send the best team not yet tried for this alert; None when no team is eligible."""
        best = suggested(await rank_teams(conn, alert.id, self.runtime.clock(), self.runtime.tz))
        if best is None:
            return None
        return await self.dispatch_in(conn, events, alert.id, SYSTEM, team_id=best.team_id, reason=why)
