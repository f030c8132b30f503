"""A team's answers to an emergency dispatch, by SMS reply or on its job page.

`1 <code>` received → team_acknowledged, `3 <code>` arrived → on_scene,
`9 <code>` done → resolved (hospital when a 120 hand-off was recorded, otherwise
handled at home), `2 <code>` declined → the next suggested team is sent at once.
Each runs in the inbound reply's transaction, through the same desk actions an
operator uses.
"""

from __future__ import annotations

from dispatch.alert_desk import JOB_KIND, Actor, AlertDesk
from dispatch.alerts import Alert, AlertError, AlertState, IllegalTransition, Outcome, get_alert
from dispatch.database import Conn
from dispatch.events import DomainEvent
from dispatch.notices import Severity, raise_notice
from providers.jobs import Job, JobDetails, JobHandlers, JobOutcome, close_job
from providers.replies import ReplyAction

STATE_ZH = {
    AlertState.RAISED: "待接警",
    AlertState.ACKNOWLEDGED: "已接警",
    AlertState.TEAM_DISPATCHED: "已派队",
    AlertState.TEAM_ACKNOWLEDGED: "队伍已确认",
    AlertState.ON_SCENE: "已到达现场",
    AlertState.RESOLVED: "已处理完毕",
    AlertState.CANCELLED: "已取消",
}

# Which buttons the job page offers in each state.
PAGE_ACTIONS: dict[AlertState, tuple[ReplyAction, ...]] = {
    AlertState.TEAM_DISPATCHED: (ReplyAction.ACCEPT, ReplyAction.DECLINE, ReplyAction.ARRIVED),
    AlertState.TEAM_ACKNOWLEDGED: (ReplyAction.ARRIVED, ReplyAction.DONE),
    AlertState.ON_SCENE: (ReplyAction.DONE,),
}


def register_alert_replies(desk: AlertDesk) -> None:
    async def handle(conn: Conn, job: Job, action: ReplyAction, actor: str) -> JobOutcome:
        alert = await get_alert(conn, job.subject_id, for_update=True)
        if alert.team_id != job.party_id or not alert.state.is_open:
            # The desk skipped this job while this reply held it (see close_jobs): close it here.
            await close_job(conn, job.id, reason="another team sent" if alert.state.is_open else "closed")
        if alert.team_id != job.party_id:
            return JobOutcome(
                f"紧急任务{job.code}已改派其他队，无需前往。",
                f"Emergency {job.code} was given to another team; no need to go.",
                ok=False,
            )
        events: list[DomainEvent] = []
        who = Actor(actor)
        try:
            answer = await _act(conn, desk, events, alert, job, action, who)
        except IllegalTransition as exc:
            state = exc.current
            return JobOutcome(
                f"紧急任务{job.code}当前状态为“{STATE_ZH[state]}”，此操作无效。如有疑问请拨12349。",
                f"Emergency {job.code} is {state.value}; that reply does not apply. Call 12349 if unsure.",
                ok=False,
            )
        except AlertError as exc:
            return JobOutcome(f"操作未完成：{exc}", f"Not done: {exc}", ok=False)
        return JobOutcome(answer[0], answer[1], ok=True, events=tuple(events))

    async def details(conn: Conn, job: Job) -> JobDetails:
        alert = await get_alert(conn, job.subject_id)
        row = await conn.fetchrow(
            """SELECT r.name, r.address, r.chronic_conditions, r.medication, r.allergies, r.mobility,
                      coalesce(r.lat, c.lat) AS lat, coalesce(r.lon, c.lon) AS lon, c.name AS community,
                      (SELECT string_agg(p.e164, ' ' ORDER BY p.position) FROM resident_phones p
                       WHERE p.resident_id = r.id) AS phones,
                      (SELECT e.name || '（' || e.relation || '）' || e.phone_e164 FROM emergency_contacts e
                       WHERE e.resident_id = r.id ORDER BY e.position LIMIT 1) AS contact
               FROM residents r LEFT JOIN communities c ON c.id = r.community_id WHERE r.id = $1""",
            alert.resident_id,
        )
        lines = [("状态", STATE_ZH[alert.state]), ("类型", alert.kind.value)]
        map_link = None
        if row is not None:
            lines += [
                ("老人", row["name"]),
                ("地址", f"{row['community'] or ''} {row['address']}".strip()),
                ("电话", row["phones"] or "—"),
                ("紧急联系人", row["contact"] or "—"),
                ("慢性病", row["chronic_conditions"] or "—"),
                ("用药", row["medication"] or "—"),
                ("过敏", row["allergies"] or "—"),
                ("行动能力", row["mobility"] or "—"),
            ]
            if row["lat"] is not None and row["lon"] is not None:
                map_link = f"https://uri.amap.com/marker?position={row['lon']},{row['lat']}&name=12349"
        return JobDetails(
            title=f"紧急任务 {job.code}",
            lines=lines,
            map_link=map_link,
            actions=PAGE_ACTIONS.get(alert.state, ()) if alert.team_id == job.party_id else (),
        )

    JobHandlers.register(JOB_KIND, handle, details=details)


async def _act(
    conn: Conn,
    desk: AlertDesk,
    events: list[DomainEvent],
    alert: Alert,
    job: Job,
    action: ReplyAction,
    who: Actor,
) -> tuple[str, str]:
    code = job.code
    if action is ReplyAction.ACCEPT:
        if alert.state is AlertState.TEAM_ACKNOWLEDGED:
            return (
                f"紧急任务{code}已确认过，请尽快前往。",
                f"Emergency {code} was already confirmed; please go.",
            )
        await desk.team_acknowledge_in(conn, events, alert.id, who)
        return (
            f"已确认紧急任务{code}，请尽快前往。到达后回复 3 {code}。",
            f"Emergency {code} confirmed. Reply 3 {code} on arrival.",
        )
    if action is ReplyAction.ARRIVED:
        await desk.on_scene_in(conn, events, alert.id, who)
        return (
            f"已记录到达现场（{code}）。处理完后回复 9 {code}。",
            f"Arrival recorded ({code}). Reply 9 {code} when done.",
        )
    if action is ReplyAction.DONE:
        outcome = Outcome.HOSPITAL if alert.handoff_120_at else Outcome.HANDLED_AT_HOME
        await desk.close_in(
            conn, events, alert.id, who, "resolve", outcome=outcome, reason="team reported done"
        )
        return f"紧急任务{code}已结束，谢谢！", f"Emergency {code} closed. Thank you!"
    # Declined: the next team goes now rather than after the silence deadline.
    events.append(
        await raise_notice(
            conn,
            kind="alert.team_declined",
            severity=Severity.WARNING,
            text=f"警情 {alert.id}：应急队拒绝了任务{code}。 / Alert {alert.id}: the team declined {code}.",
            subject_type="alert",
            subject_id=alert.id,
            context_id=alert.context_id,
            at=desk.runtime.clock(),
        )
    )
    moved = await desk.dispatch_next_team_in(conn, events, alert, f"team declined job {code}")
    if moved is None:
        return (
            f"已收到您无法前往（{code}），中心将另行安排。",
            f"Noted that you cannot go ({code}); we will arrange.",
        )
    return f"已收到您无法前往（{code}），已改派其他队。", f"Noted ({code}); another team has been sent."
