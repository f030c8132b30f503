"""What a stored alarm means: the second step of intake, after the sender has been answered.

The arrival statement (arrival.py) stores every alarm at once and answers the sender; an
alarm that is not a life sign is stored `pending`. `handle_alarms` gives pending alarms
their meaning in one transaction, in the order they arrived, reading each from its row (so
the same code serves the alarms just stored and those a crash left pending): an alert
raised or joined through `AlertDesk.raise_alert`, a timeline note (restore, cancel, a press
just after the alert closed), or a maintenance notice; then the row gets its outcome.

Why two steps: the sender's ACK waits only for the one statement that makes the alarm safe,
not for the alert work behind it (escalation ladder, team choice, notices), so a surge of
presses is answered as fast as a surge of test reports. The alert is raised milliseconds
later by the same process, dated by the alarm's receipt, so its escalation clock is not
moved; a pending alarm is on disk and is handled after a crash (intake.PendingAlarms).

Decisions:
- A repeat while an alert is open joins it (`raise_alert` counts `triggers`). A
  press within `alarms.rejoin_window_seconds` after the resident's alert of that
  kind was closed is attached to the closed alert (a note) with a critical
  call-back notice, instead of a second alert an operator would close again.
- A restore is a note on the alert it answers. A cancel from the device is a
  note asking for a call-back and a notice; it never cancels an alert: only an
  operator closes one.
- Low battery, mains loss and other faults update the device and raise one
  maintenance notice while one is open for that device and fault; tamper is an
  alert (kind tamper). Each fault and tamper of a known device also asks for a
  repair (dispatch/repairs.py: one open repair order per device, repeats join it).
- An alarm from a device nobody registered is still stored, and an emergency
  from it still raises an alert (or joins the open one fed by the same sender).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dispatch.alert_desk import Actor, AlertDesk
from dispatch.alerts import OPEN_STATES, AlertKind, AlertSource, note
from dispatch.config import AlarmsConfig
from dispatch.database import Conn
from dispatch.events import DomainEvent
from dispatch.notices import Severity, raise_notice
from dispatch.repairs import request_repair
from telephony.alarms.kinds import ALERT_KINDS, MAINTENANCE_KINDS, AlarmKind, AlarmSource, Outcome, Qualifier
from telephony.alarms.messages import AlarmResult, HeardDevice


@dataclass(frozen=True)
class StoredAlarm:
    """One alarm as its row holds it: everything its meaning depends on."""

    id: int
    source: AlarmSource
    sender: str
    actor: str
    device: HeardDevice | None
    kind: AlarmKind
    qualifier: Qualifier
    code: str
    zone: str | None
    details: dict[str, Any]
    received_at: dt.datetime
    outcome: Outcome
    alert_id: int | None


CLAIM = """
SELECT id, source, sender, coalesce(actor, sender) AS actor, device_id, resident_id, kind, qualifier,
       code, zone, details, received_at, outcome, alert_id
FROM alarms WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE
"""

RECORD = """
UPDATE alarms a SET outcome = h.outcome, alert_id = h.alert_id, notice_id = h.notice_id,
                    context_id = h.context_id, handled_at = $6
FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::uuid[])
     AS h(id, outcome, alert_id, notice_id, context_id)
WHERE a.id = h.id
"""


def _stored(row: Any) -> StoredAlarm:
    return StoredAlarm(
        id=row["id"],
        source=AlarmSource(row["source"]),
        sender=row["sender"],
        actor=row["actor"],
        device=HeardDevice(row["device_id"], row["resident_id"]) if row["device_id"] is not None else None,
        kind=AlarmKind(row["kind"]),
        qualifier=Qualifier(row["qualifier"]),
        code=row["code"],
        zone=row["zone"],
        details=row["details"] or {},
        received_at=row["received_at"],
        outcome=Outcome(row["outcome"]),
        alert_id=row["alert_id"],
    )


@dataclass
class Handled:
    outcome: Outcome
    alert_id: int | None = None
    notice_id: int | None = None
    context_id: Any = None
    events: list[DomainEvent] = field(default_factory=list)


async def handle_alarms(
    conn: Conn, desk: AlertDesk, settings: AlarmsConfig, alarm_ids: Sequence[int], now: dt.datetime
) -> tuple[dict[int, AlarmResult], list[DomainEvent], list[StoredAlarm]]:
    """Give each pending alarm of `alarm_ids` its meaning, in the caller's transaction, oldest first;
    an alarm already handled (by another instance, or a retry racing the first try) is read as it is.
    Returns every alarm's result by id, the events to publish after the commit, and the alarms
    handled now."""
    rows = [_stored(row) for row in await conn.fetch(CLAIM, list(alarm_ids))]
    results: dict[int, AlarmResult] = {}
    events: list[DomainEvent] = []
    done: list[tuple[StoredAlarm, Handled]] = []
    for alarm in rows:
        if alarm.outcome is not Outcome.PENDING:
            results[alarm.id] = AlarmResult(alarm.id, alarm.kind, alarm.outcome, alarm.alert_id)
            continue
        handled = await _handle(conn, desk, settings, alarm)
        done.append((alarm, handled))
        events.extend(handled.events)
        results[alarm.id] = AlarmResult(alarm.id, alarm.kind, handled.outcome, handled.alert_id)
    if done:
        await conn.execute(
            RECORD,
            [alarm.id for alarm, _ in done],
            [h.outcome.value for _, h in done],
            [h.alert_id for _, h in done],
            [h.notice_id for _, h in done],
            [h.context_id for _, h in done],
            now,
        )
    return results, events, [alarm for alarm, _ in done]


def _context(alarm: StoredAlarm) -> dict[str, Any]:
    context: dict[str, Any] = {"alarm": alarm.kind.value, "code": alarm.code, "via": alarm.source.value}
    if alarm.zone:
        context["zone"] = alarm.zone
    if alarm.details.get("description"):
        context["description"] = alarm.details["description"]
    if "location" in alarm.details:
        context["location"] = alarm.details["location"]
    return context


async def _handle(conn: Conn, desk: AlertDesk, settings: AlarmsConfig, alarm: StoredAlarm) -> Handled:
    alert_kind = ALERT_KINDS.get(alarm.kind)
    if alert_kind is not None and alarm.qualifier is not Qualifier.RESTORE:
        if alarm.kind is AlarmKind.TAMPER and alarm.qualifier is Qualifier.NEW and alarm.device is not None:
            # a unit pulled off the wall is an alert now and a repair job after it (refitted)
            await request_repair(conn, alarm.device.id, alarm.kind.value, alarm.received_at)
        return await _emergency(conn, desk, settings, alarm, alert_kind)
    if alert_kind is not None:
        return await _attach(conn, settings, alarm, alert_kind, "alarm.restored")
    if alarm.kind is AlarmKind.CANCEL:
        return await _cancel(conn, alarm)
    if alarm.kind in MAINTENANCE_KINDS:
        return await _maintenance(conn, alarm)
    return Handled(Outcome.LIFE_SIGN)


async def _latest_alert(
    conn: Conn, alarm: StoredAlarm, kind: AlertKind | None
) -> tuple[int, bool, dt.datetime | None, Any] | None:
    """(id, open, closed_at, context id) of the most recent alert this alarm belongs with."""
    device = alarm.device
    if device is not None and device.resident_id is not None:
        row = await conn.fetchrow(
            """SELECT id, state = ANY($3::text[]) AS open, closed_at, context_id FROM alerts
               WHERE resident_id = $1 AND ($2::text IS NULL OR kind = $2)
               ORDER BY (state = ANY($3::text[])) DESC, raised_at DESC LIMIT 1""",
            device.resident_id,
            kind.value if kind else None,
            list(OPEN_STATES),
        )
    elif device is not None:
        row = await conn.fetchrow(
            """SELECT id, state = ANY($3::text[]) AS open, closed_at, context_id FROM alerts
               WHERE device_id = $1 AND resident_id IS NULL AND ($2::text IS NULL OR kind = $2)
               ORDER BY (state = ANY($3::text[])) DESC, raised_at DESC LIMIT 1""",
            device.id,
            kind.value if kind else None,
            list(OPEN_STATES),
        )
    else:
        # Nobody registered this device: group by who sent it, through the alarms it sent before.
        row = await conn.fetchrow(
            """SELECT a.id, a.state = ANY($3::text[]) AS open, a.closed_at, a.context_id
               FROM alarms al JOIN alerts a ON a.id = al.alert_id
               WHERE al.sender = $1 AND ($2::text IS NULL OR a.kind = $2)
               ORDER BY (a.state = ANY($3::text[])) DESC, al.id DESC LIMIT 1""",
            alarm.sender,
            kind.value if kind else None,
            list(OPEN_STATES),
        )
    if row is None:
        return None
    return int(row["id"]), bool(row["open"]), row["closed_at"], row["context_id"]


async def _emergency(
    conn: Conn, desk: AlertDesk, settings: AlarmsConfig, alarm: StoredAlarm, alert_kind: AlertKind
) -> Handled:
    now = alarm.received_at
    device = alarm.device
    latest = await _latest_alert(conn, alarm, alert_kind)
    if latest is not None:
        alert_id, is_open, closed_at, context_id = latest
        window = dt.timedelta(seconds=settings.rejoin_window_seconds)
        if not is_open and closed_at is not None and now - closed_at <= window:
            return await _after_close(conn, alarm, alert_id, context_id, now - closed_at)
        if is_open and device is None:
            # raise_alert cannot join an alert of an unknown device: note the repeat on it instead.
            event = await note(
                conn, alert_id, kind="alarm.repeated", actor=alarm.actor, at=now, data=_context(alarm)
            )
            return Handled(Outcome.ALERT_JOINED, alert_id, context_id=context_id, events=[event])
    raised = await desk.raise_alert(
        conn,
        source=AlertSource.ALARM,
        kind=alert_kind,
        resident_id=device.resident_id if device else None,
        device_id=device.id if device else None,
        context={**_context(alarm), **({} if device else {"unknown_device": alarm.sender})},
        actor=Actor(alarm.actor),
        at=now,
    )
    outcome = Outcome.ALERT_RAISED if raised.created else Outcome.ALERT_JOINED
    return Handled(outcome, raised.alert.id, context_id=raised.alert.context_id, events=list(raised.events))


async def _after_close(
    conn: Conn, alarm: StoredAlarm, alert_id: int, context_id: Any, since_close: dt.timedelta
) -> Handled:
    now = alarm.received_at
    seconds = int(since_close.total_seconds())
    event = await note(
        conn,
        alert_id,
        kind="alarm.after_close",
        actor=alarm.actor,
        at=now,
        reason=f"pressed again {seconds} s after the alert was closed",
        data=_context(alarm),
    )
    notice = await raise_notice(
        conn,
        kind="alarm.call_back",
        severity=Severity.CRITICAL,
        text=(
            f"警情 {alert_id} 关闭 {seconds} 秒后设备再次报警，请立即回拨确认。"
            f" / Alert {alert_id}: the device alarmed again {seconds} s after it was closed; call back now."
        ),
        subject_type="alert",
        subject_id=alert_id,
        context_id=context_id,
        data={"alarm": alarm.kind.value},
        at=now,
    )
    return Handled(
        Outcome.ATTACHED_TO_CLOSED, alert_id, notice.subject_id, context_id, events=[event, notice]
    )


async def _attach(
    conn: Conn, settings: AlarmsConfig, alarm: StoredAlarm, alert_kind: AlertKind | None, note_kind: str
) -> Handled:
    """A restore: a note on the open alert it answers, or the one closed just before."""
    now = alarm.received_at
    latest = await _latest_alert(conn, alarm, alert_kind)
    if latest is None:
        return Handled(Outcome.NOTHING_OPEN)
    alert_id, is_open, closed_at, context_id = latest
    recent = closed_at is not None and now - closed_at <= dt.timedelta(seconds=settings.rejoin_window_seconds)
    if not (is_open or recent):
        return Handled(Outcome.NOTHING_OPEN)
    event = await note(conn, alert_id, kind=note_kind, actor=alarm.actor, at=now, data=_context(alarm))
    return Handled(Outcome.RESTORE_NOTED, alert_id, context_id=context_id, events=[event])


async def _cancel(conn: Conn, alarm: StoredAlarm) -> Handled:
    """The resident pressed cancel: ask for a call-back; only an operator closes the alert."""
    now = alarm.received_at
    latest = await _latest_alert(conn, alarm, None)
    if latest is None or not latest[1]:
        return Handled(Outcome.NOTHING_OPEN)
    alert_id, _, _, context_id = latest
    event = await note(
        conn,
        alert_id,
        kind="alarm.cancel_requested",
        actor=alarm.actor,
        at=now,
        reason="cancelled at the device: call back before closing",
        data={**_context(alarm), "call_back": True},
    )
    notice = await raise_notice(
        conn,
        kind="alarm.cancel_requested",
        severity=Severity.WARNING,
        text=(
            f"警情 {alert_id}：老人在设备上按了取消，请回拨确认后再关闭。"
            f" / Alert {alert_id}: cancelled at the device; call back before closing it."
        ),
        subject_type="alert",
        subject_id=alert_id,
        context_id=context_id,
        at=now,
    )
    return Handled(Outcome.CANCEL_NOTED, alert_id, notice.subject_id, context_id, events=[event, notice])


_FAULT_COLUMN = {AlarmKind.MAINS_LOSS: "mains_lost_at", AlarmKind.LOW_BATTERY: "battery_low_at"}
_FAULT_ZH = {
    AlarmKind.MAINS_LOSS: "市电断电",
    AlarmKind.LOW_BATTERY: "电池电量低",
    AlarmKind.TROUBLE: "设备故障",
}


async def _maintenance(conn: Conn, alarm: StoredAlarm) -> Handled:
    """A technical fault: the device row records it, and one notice per open fault reaches the floor."""
    now = alarm.received_at
    device = alarm.device
    column = _FAULT_COLUMN.get(alarm.kind)
    if alarm.qualifier is Qualifier.RESTORE:
        if device is not None and column is not None:
            await conn.execute(f"UPDATE devices SET {column} = NULL WHERE id = $1", device.id)
        return Handled(Outcome.DEVICE_UPDATED)
    if device is not None and column is not None:
        await conn.execute(
            f"UPDATE devices SET {column} = coalesce({column}, $2) WHERE id = $1", device.id, now
        )
    kind = f"device.{alarm.kind.value}"
    subject_type, subject_id = ("device", device.id) if device else (None, None)
    already = await conn.fetchval(
        """SELECT id FROM notices WHERE kind = $1 AND acknowledged_at IS NULL
           AND subject_type IS NOT DISTINCT FROM $2 AND subject_id IS NOT DISTINCT FROM $3
           AND ($2::text IS NOT NULL OR data->>'sender' = $4) LIMIT 1""",
        kind,
        subject_type,
        subject_id,
        alarm.sender,
    )
    if device is not None:
        # a repeat joins the device's open repair order, or opens one when the last is done
        await request_repair(conn, device.id, alarm.kind.value, now)
    if already is not None:
        return Handled(Outcome.DEVICE_UPDATED, notice_id=int(already))
    what = _FAULT_ZH[alarm.kind]
    label = f"设备 {device.id}" if device else "未登记设备"
    notice = await raise_notice(
        conn,
        kind=kind,
        severity=Severity.WARNING,
        text=f"{label}：{what}，请安排维护。 / Device {device.id if device else '?'}: {alarm.kind.value}, "
        "maintenance needed.",
        subject_type=subject_type,
        subject_id=subject_id,
        data={"sender": alarm.sender, "code": alarm.code, "audience": "maintenance"},
        at=now,
    )
    return Handled(Outcome.MAINTENANCE, notice_id=notice.subject_id, events=[notice])
