"""The escalation ladder: what each alert deadline does when it comes due.

Every step writes `alert.escalated` on the alert's timeline with the step, the
time it was due and the time it fired, and raises a notice for the people who
must act. A step whose alert has already moved on does nothing (its deadline was
cancelled by the move; this guard covers a move and a firing that raced).
"""

from __future__ import annotations

import datetime as dt

from dispatch import family
from dispatch.alert_desk import (
    ACK_ALL,
    ACK_SUPERVISOR,
    ON_SCENE_OVERDUE,
    SYSTEM,
    TEAM_SILENT,
    AlertDesk,
)
from dispatch.alerts import Alert, AlertState, get_alert
from dispatch.database import Conn
from dispatch.deadlines import Deadline, DeadlineHandlers
from dispatch.events import DomainEvent, append_event
from dispatch.notices import Severity, raise_notice
from dispatch.team_choice import rank_teams, suggested

# Which alert states each step still applies to.
STEP_STATES: dict[str, tuple[AlertState, ...]] = {
    ACK_SUPERVISOR: (AlertState.RAISED,),
    ACK_ALL: (AlertState.RAISED,),
    TEAM_SILENT: (AlertState.TEAM_DISPATCHED,),
    ON_SCENE_OVERDUE: (AlertState.TEAM_ACKNOWLEDGED,),
}

STEP_TEXT: dict[str, tuple[str, str, str]] = {
    # step: (audience, zh, en)
    ACK_SUPERVISOR: ("supervisor", "无人接警", "not acknowledged by any operator"),
    ACK_ALL: ("all", "仍无人接警，请所有话务员处理", "still not acknowledged: every operator, please"),
    TEAM_SILENT: ("supervisor", "应急队未确认", "the team did not acknowledge"),
    ON_SCENE_OVERDUE: ("supervisor", "应急队迟迟未到达现场", "team not on scene yet"),
}


async def _escalate(
    conn: Conn, alert: Alert, deadline: Deadline, now: dt.datetime, *, extra: str = ""
) -> list[DomainEvent]:
    audience, zh, en = STEP_TEXT[deadline.kind]
    await conn.execute("UPDATE alerts SET escalations = escalations + 1 WHERE id = $1", alert.id)
    late_by = (now - alert.raised_at).total_seconds()
    step_event = await append_event(
        conn,
        subject_type="alert",
        subject_id=alert.id,
        kind="alert.escalated",
        actor="system:escalation",
        reason=en + (f" ({extra})" if extra else ""),
        context_id=alert.context_id,
        data={
            "step": deadline.kind,
            "audience": audience,
            "due_at": deadline.due_at.isoformat(),
            "fired_at": now.isoformat(),
            "seconds_since_raised": round(late_by, 1),
        },
        at=now,
    )
    notice = await raise_notice(
        conn,
        kind=deadline.kind,
        severity=Severity.CRITICAL,
        text=f"警情 {alert.id}：{zh}。 / Alert {alert.id}: {en}." + (f" {extra}" if extra else ""),
        subject_type="alert",
        subject_id=alert.id,
        context_id=alert.context_id,
        data={"audience": audience, "step": deadline.kind},
        at=now,
    )
    return [step_event, notice]


def register_escalation(handlers: DeadlineHandlers, desk: AlertDesk) -> None:
    """Hook every alert deadline kind to its step."""

    async def ack_step(conn: Conn, deadline: Deadline, now: dt.datetime) -> list[DomainEvent]:
        alert = await get_alert(conn, deadline.subject_id, for_update=True)
        if alert.state not in STEP_STATES[deadline.kind]:
            return []
        return await _escalate(conn, alert, deadline, now)

    async def team_silent(conn: Conn, deadline: Deadline, now: dt.datetime) -> list[DomainEvent]:
        alert = await get_alert(conn, deadline.subject_id, for_update=True)
        if alert.state not in STEP_STATES[TEAM_SILENT] or alert.team_id != deadline.payload.get("team_id"):
            return []
        best = suggested(await rank_teams(conn, alert.id, now, desk.runtime.tz))
        if best is not None:
            extra = f"改派 {best.name} / next team {best.code} sent"
        else:
            # The silent team stays assigned (it may still answer); a supervisor must find help now.
            extra = "没有其他可派的队，请立即电话联系应急队 / no other team available: phone a team now"
        events = await _escalate(conn, alert, deadline, now, extra=extra)
        if best is not None:
            await desk.dispatch_in(
                conn, events, alert.id, SYSTEM, team_id=best.team_id, reason="previous team silent"
            )
        return events

    async def on_scene_overdue(conn: Conn, deadline: Deadline, now: dt.datetime) -> list[DomainEvent]:
        alert = await get_alert(conn, deadline.subject_id, for_update=True)
        if alert.state not in STEP_STATES[ON_SCENE_OVERDUE]:
            return []
        return await _escalate(conn, alert, deadline, now)

    async def family_check(conn: Conn, deadline: Deadline, now: dt.datetime) -> list[DomainEvent]:
        alert = await get_alert(conn, deadline.subject_id, for_update=True)
        if not alert.state.is_open:
            return []
        reached = await family.message_reached(conn, desk.runtime, int(deadline.payload["sms_id"]))
        if reached:
            return []
        return await family.notify_raised(conn, desk.runtime, alert, now)

    handlers.register(ACK_SUPERVISOR, ack_step)
    handlers.register(ACK_ALL, ack_step)
    handlers.register(TEAM_SILENT, team_silent)
    handlers.register(ON_SCENE_OVERDUE, on_scene_overdue)
    handlers.register(family.FAMILY_CHECK, family_check)
