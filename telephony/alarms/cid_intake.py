"""Contact ID into intake: a dialplan UserEvent (through the AMI link) or an AlarmReceiver event file."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging

import asyncpg

from dispatch.alert_desk import AlertDesk
from dispatch.runtime import Runtime
from telephony.alarms.contact_id import ContactIdError, ContactIdEvent, EventFile, parse_contact_id
from telephony.alarms.intake import DATABASE_DOWN, store, take
from telephony.alarms.kinds import AlarmSource
from telephony.alarms.messages import DeviceKey, IncomingAlarm, IntakeResult, Message, ReceiptConflict
from telephony.ami import Sleep
from telephony.ami_events import UserEventReceived

log = logging.getLogger(__name__)


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


def contact_id_message(
    runtime: Runtime, raw: str, *, caller: str | None, received_at: dt.datetime, event_id: str | None = None
) -> Message:
    """One event string (AlarmReceiver's digits, reported by a dialplan UserEvent) as intake takes it.

    `caller` is the calling number in any form (it finds the device); `event_id`, when the
    AMI side has one, makes a replay of the same event store nothing new; without it, the
    same digits from the same line within the same second are taken as one event. Raises
    ContactIdError for a string that is not an event.
    """
    event = parse_contact_id(raw)
    e164 = runtime.phones.try_normalise(caller)
    key = event_id or f"{e164 or 'unknown'}/{event.raw}/{received_at.astimezone(dt.UTC):%Y%m%dT%H%M%S}"
    return Message(
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


async def ingest_contact_id(
    runtime: Runtime,
    desk: AlertDesk,
    raw: str,
    *,
    caller: str | None,
    received_at: dt.datetime,
    event_id: str | None = None,
) -> IntakeResult:
    """`contact_id_message`, stored and handled: what its alarm did. Raises the database's errors
    when nothing could be stored."""
    message = contact_id_message(runtime, raw, caller=caller, received_at=received_at, event_id=event_id)
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


# The dialplan's (or a script's, through AMI's UserEvent action) report of one Contact ID event:
#   UserEvent(ContactId,Digits: <ACCT MT Q XYZ GG CCC S>,Caller: ${CALLERID(num)}[,EventId: <id>])
CONTACT_ID_EVENT = "ContactId"
# AMI has no acknowledgement: an event that finds the database away is tried again for this long
# (with growing pauses) before it is given up, loudly. The HTTP route (eventcmd) is the durable one.
RETRY_FOR_SECONDS = 600.0


class ContactIdEvents:
    """Contact ID events reported on one AMI link, each taken into intake by a task owned here."""

    def __init__(self, runtime: Runtime, desk: AlertDesk, server: str, *, sleep: Sleep) -> None:
        self.runtime = runtime
        self.desk = desk
        self.server = server
        self.sleep = sleep
        self.tasks: set[asyncio.Task[None]] = set()
        self.refused = 0

    def take(self, event: UserEventReceived) -> None:
        task = asyncio.create_task(self._ingest(event), name=f"contact-id:{self.server}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _ingest(self, event: UserEventReceived) -> None:
        digits = event.fields.get("Digits", "").strip()
        try:
            message = contact_id_message(
                self.runtime,
                digits,
                caller=event.fields.get("Caller", "").strip() or None,
                received_at=dt.datetime.fromtimestamp(event.at, dt.UTC),
                event_id=event.fields.get("EventId", "").strip() or None,
            )
        except ContactIdError as exc:
            self.refused += 1
            log.warning("Asterisk %s: a ContactId UserEvent refused: %s", self.server, exc)
            return
        pause, waited = 1.0, 0.0
        while True:
            try:
                # stored is enough: the handler (and its retry sweep) see to what it means
                await store(self.runtime, self.desk, message)
                return
            except ReceiptConflict:
                log.warning(
                    "Asterisk %s: a ContactId UserEvent reused an EventId for another event", self.server
                )
                return
            except (*DATABASE_DOWN, asyncpg.PostgresError) as exc:
                if waited >= RETRY_FOR_SECONDS:
                    log.error(
                        "Asterisk %s: Contact ID event of account %s not stored in %d s (%s): lost",
                        self.server,
                        digits[:4],
                        waited,
                        type(exc).__name__,
                    )
                    return
                log.warning(
                    "Asterisk %s: Contact ID event not stored yet (%s); trying again in %.0f s",
                    self.server,
                    type(exc).__name__,
                    pause,
                )
                await self.sleep(pause, "contact id retry")
                waited += pause
                pause = min(pause * 2, 30.0)

    async def settled(self) -> None:
        """Until every event taken so far is stored (tests)."""
        while self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
