"""Contact ID into intake: a dialplan UserEvent (through the AMI link) or an AlarmReceiver event file."""

from __future__ import annotations

import datetime as dt
import hashlib

from dispatch.alert_desk import AlertDesk
from dispatch.runtime import Runtime
from telephony.alarms.contact_id import ContactIdEvent, EventFile, parse_contact_id
from telephony.alarms.intake import take
from telephony.alarms.kinds import AlarmSource
from telephony.alarms.messages import DeviceKey, IncomingAlarm, IntakeResult, Message


def _alarm(event: ContactIdEvent) -> IncomingAlarm:
    return IncomingAlarm(
        kind=event.kind,
        qualifier=event.qualifier,
        code=event.code,
        zone=event.zone,
        partition=event.group,
        description=event.description,
        details={"account": event.account, "message_type": event.message_type},
    )


def _sender(account: str, caller: str | None) -> str:
    # The Contact ID account is only unique together with the line it calls from.
    return f"cid:{account}@{caller or 'unknown'}"


async def ingest_contact_id(
    runtime: Runtime,
    desk: AlertDesk,
    raw: str,
    *,
    caller: str | None,
    received_at: dt.datetime,
    event_id: str | None = None,
) -> IntakeResult:
    """One event string from the dialplan (e.g. a UserEvent carrying AlarmReceiver's digits).

    `caller` is the calling number in any form (it finds the device); `event_id`, when the
    AMI side has one (the channel's Uniqueid and the event's place), makes a replay of the
    same event store nothing new; without it, the same digits from the same line within the
    same second are taken as one event. Raises ContactIdError for a string that is not an
    event, and the database's errors when nothing could be stored.
    """
    event = parse_contact_id(raw)
    e164 = runtime.phones.try_normalise(caller)
    key = event_id or f"{e164 or 'unknown'}/{event.raw}/{received_at.astimezone(dt.UTC):%Y%m%dT%H%M%S}"
    message = Message(
        source=AlarmSource.CONTACT_ID,
        sender=_sender(event.account, e164),
        actor=f"cid:{event.account}",
        device=DeviceKey(caller_e164=e164),
        payload=event.raw,
        alarms=(_alarm(event),),
        received_at=received_at,
        receipt_key=f"ami:{key}",
        digest=hashlib.sha256(event.raw.encode()).hexdigest(),
    )
    return await take(runtime, desk, message)


def event_file_message(
    runtime: Runtime, parsed: EventFile, body: str, received_at: dt.datetime, integration_id: int
) -> Message:
    """An AlarmReceiver event file posted by its eventcmd: one receipt for the whole file,
    so the script's retry of a file stores nothing twice."""
    e164 = runtime.phones.try_normalise(parsed.calling_from)
    digest = hashlib.sha256(body.encode()).hexdigest()
    account = parsed.events[0].account
    return Message(
        source=AlarmSource.CONTACT_ID,
        sender=_sender(account, e164),
        actor=f"cid:{account}",
        device=DeviceKey(caller_e164=e164),
        payload=body,
        alarms=tuple(_alarm(e) for e in parsed.events),
        received_at=received_at,
        receipt_key=f"file:{digest}",
        digest=digest,
        integration_id=integration_id,
    )
