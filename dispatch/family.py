"""Telling the family (紧急联系人) about an alert: in contact order, the next one when
a message does not reach anyone, and how it ended.

All of it runs in the caller's transaction, so the SMS rows are committed with
the alert change that caused them, and the SMS worker sends them afterwards.
"""

from __future__ import annotations

import datetime as dt

from dispatch.alerts import Alert, Outcome
from dispatch.database import Conn
from dispatch.deadlines import schedule_deadline
from dispatch.events import DomainEvent, append_event
from dispatch.notices import Severity, raise_notice
from dispatch.runtime import Runtime
from providers.outbox import queue_sms
from providers.templates import family_alert_raised, family_resolved, family_team_on_way

FAMILY_CHECK = "alert.family_check"

# A message has reached the family when the carrier says delivered; the development
# outbox never hears from a carrier, so there "sent" is as far as a message gets.
REACHED_TWILIO = ("delivered",)
REACHED_OUTBOX = ("sent", "delivered")
FAILED = ("failed", "undelivered")


async def _resident_name(conn: Conn, alert: Alert) -> str:
    if alert.resident_id is None:
        return ""
    name: str | None = await conn.fetchval("SELECT name FROM residents WHERE id = $1", alert.resident_id)
    return name or ""


def _language(runtime: Runtime) -> str:
    return runtime.config.locale.language


async def notify_raised(conn: Conn, runtime: Runtime, alert: Alert, now: dt.datetime) -> list[DomainEvent]:
    """Text the first emergency contact not yet told; arm the check that moves on if it does not arrive."""
    if alert.resident_id is None:
        return []
    contact = await conn.fetchrow(
        """SELECT c.id, c.position, c.phone_e164 FROM emergency_contacts c
           WHERE c.resident_id = $1 AND NOT EXISTS (
               SELECT 1 FROM alert_family_notices n
               WHERE n.alert_id = $2 AND n.contact_id = c.id AND n.purpose = 'raised')
           ORDER BY c.position LIMIT 1""",
        alert.resident_id,
        alert.id,
    )
    if contact is None:
        told = await conn.fetchval("SELECT count(*) FROM alert_family_notices WHERE alert_id = $1", alert.id)
        notice = await raise_notice(
            conn,
            kind="alert.family_unreachable",
            severity=Severity.WARNING,
            text=(
                f"警情 {alert.id}：没有可联系的紧急联系人，请电话联系家属。"
                f" / Alert {alert.id}: no emergency contact left to text ({told} tried); call the family."
            ),
            subject_type="alert",
            subject_id=alert.id,
            context_id=alert.context_id,
            at=now,
        )
        return [notice]
    body = family_alert_raised(resident_name=await _resident_name(conn, alert), language=_language(runtime))
    sms_id = await queue_sms(
        conn,
        contact["phone_e164"],
        body,
        purpose="family",
        idempotency_key=f"alert:{alert.id}:family:raised:{contact['id']}",
        context_id=alert.context_id,
        subject_type="alert",
        subject_id=alert.id,
    )
    await conn.execute(
        """INSERT INTO alert_family_notices (alert_id, contact_id, purpose, sms_id, notified_at)
           VALUES ($1, $2, 'raised', $3, $4)""",
        alert.id,
        contact["id"],
        sms_id,
        now,
    )
    await conn.execute(
        "UPDATE alerts SET family_notified_at = coalesce(family_notified_at, $2) WHERE id = $1", alert.id, now
    )
    await schedule_deadline(
        conn,
        kind=FAMILY_CHECK,
        subject_type="alert",
        subject_id=alert.id,
        due_at=now + dt.timedelta(seconds=runtime.config.alerts.family_retry_seconds),
        payload={"sms_id": sms_id, "position": contact["position"]},
    )
    event = await append_event(
        conn,
        subject_type="alert",
        subject_id=alert.id,
        kind="alert.family_notified",
        actor="system:family",
        context_id=alert.context_id,
        data={"contact_position": contact["position"], "sms_id": sms_id},
        at=now,
    )
    return [event]


async def message_reached(conn: Conn, runtime: Runtime, sms_id: int) -> bool | None:
    """True reached, False failed, None not known yet."""
    status = await conn.fetchval("SELECT status FROM sms_messages WHERE id = $1", sms_id)
    reached = REACHED_TWILIO if runtime.config.sms.twilio_enabled else REACHED_OUTBOX
    if status in reached:
        return True
    if status in FAILED:
        return False
    return None


async def _told(conn: Conn, alert: Alert) -> list[tuple[int, str]]:
    """(contact id, phone) of every contact told of the alert, in contact order."""
    rows = await conn.fetch(
        """SELECT c.id, c.phone_e164
           FROM alert_family_notices n JOIN emergency_contacts c ON c.id = n.contact_id
           WHERE n.alert_id = $1 AND n.purpose = 'raised' ORDER BY c.position""",
        alert.id,
    )
    return [(r["id"], r["phone_e164"]) for r in rows]


async def notify_team_on_way(
    conn: Conn, runtime: Runtime, alert: Alert, now: dt.datetime
) -> list[DomainEvent]:
    """The team has confirmed: the contacts already told hear that help is on its way."""
    if alert.team_id is None:
        return []
    team_name = await conn.fetchval("SELECT name FROM emergency_teams WHERE id = $1", alert.team_id)
    body = family_team_on_way(
        resident_name=await _resident_name(conn, alert),
        team_name=team_name or "",
        language=_language(runtime),
    )
    for contact_id, phone in await _told(conn, alert):
        await queue_sms(
            conn,
            phone,
            body,
            purpose="family",
            idempotency_key=f"alert:{alert.id}:family:on_way:{alert.team_id}:{contact_id}",
            context_id=alert.context_id,
            subject_type="alert",
            subject_id=alert.id,
        )
    return []


async def notify_closed(conn: Conn, runtime: Runtime, alert: Alert, now: dt.datetime) -> list[DomainEvent]:
    """Every contact who was told of the alert is told how it ended."""
    contacts = await _told(conn, alert)
    if not contacts:
        return []
    outcome = alert.outcome.value if alert.outcome else Outcome.FALSE_ALARM.value
    body = family_resolved(
        resident_name=await _resident_name(conn, alert), outcome=outcome, language=_language(runtime)
    )
    for contact_id, phone in contacts:
        sms_id = await queue_sms(
            conn,
            phone,
            body,
            purpose="family",
            idempotency_key=f"alert:{alert.id}:family:closed:{contact_id}",
            context_id=alert.context_id,
            subject_type="alert",
            subject_id=alert.id,
        )
        await conn.execute(
            """INSERT INTO alert_family_notices (alert_id, contact_id, purpose, sms_id, notified_at)
               VALUES ($1, $2, 'resolved', $3, $4) ON CONFLICT DO NOTHING""",
            alert.id,
            contact_id,
            sms_id,
            now,
        )
    event = await append_event(
        conn,
        subject_type="alert",
        subject_id=alert.id,
        kind="alert.family_told_outcome",
        actor="system:family",
        context_id=alert.context_id,
        data={"contacts": len(contacts), "outcome": outcome},
        at=now,
    )
    return [event]


async def no_access(conn: Conn, runtime: Runtime, alert: Alert, now: dt.datetime) -> list[DomainEvent]:
    """The team could not get in: the community and the family must be reached by phone now."""
    notice = await raise_notice(
        conn,
        kind="alert.no_access",
        severity=Severity.CRITICAL,
        text=(
            f"警情 {alert.id}：救援人员未能入户。请立即联系社区和家属开门。"
            f" / Alert {alert.id}: the team could not get in; call the community and the family now."
        ),
        subject_type="alert",
        subject_id=alert.id,
        context_id=alert.context_id,
        at=now,
    )
    return [notice]
