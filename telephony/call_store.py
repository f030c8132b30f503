"""Calls as rows: the recorder writes what the tracker learnt, many calls per transaction.

The link applies a whole socket read of AMI events to the tracker in one go; the
recorder then wakes and writes every call that changed (under load, at most one
transaction every BATCH_SECONDS, so a burst costs a few large writes), in one transaction:

1. identify the far end of each call that is ready and not yet identified
   (resident, provider, team member, unknown), all new numbers in one query;
2. raise an alert through the alert desk for a call on an emergency DID, from an
   SOS unit's line, or with an EmergencyButton press (and for a press on no call);
3. upsert the call rows whose content changed (one statement for the batch);
4. append the domain events: `call.ringing` (after identification, never before),
   `call.from_resident` (a resident's own phone), `call.answered`, `call.ended`;
5. apply what Asterisk said about calls Careline placed (see originate.py).

After the commit the events go on the bus. A failed transaction leaves everything
to be written again: what was published is only marked so after a commit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import asyncpg
import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from dispatch.alert_desk import Actor, AlertDesk
from dispatch.alerts import AlertKind, AlertSource
from dispatch.database import Conn
from dispatch.devices import device_by_serial
from dispatch.events import DomainEvent, append_event
from dispatch.residents import find_residents_by_phone
from dispatch.runtime import Runtime
from dispatch.tasks import cancel_and_wait
from telephony.ami import Sleep, real_sleep
from telephony.caller_id import UNKNOWN, Identity, Party, identify_numbers, normalised
from telephony.calls import SOS_BUTTONS, ButtonPress, Call, CallTracker, Direction, Disposition
from telephony.originate import AttemptUpdate, apply_update, finish_from_call, link_call

log = logging.getLogger(__name__)

# What a database outage looks like to the recorder: it keeps the calls and tries again.
DATABASE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)
# Under load, at most one write this often (an idle server's calls are written at once).
BATCH_SECONDS = 0.05
# A CN mobile, parsed once at start so that the first real one does not pay phonenumbers' loading.
_SAMPLE_NUMBER = "13800138000"


class TelephonyMetrics:
    """Prometheus series of every Asterisk link, made once per registry (labelled by server)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.link_up = Gauge(
            "careline_ami_link_up", "1 when the AMI link is logged in", ["server"], registry=registry
        )
        self.reconnects = Counter(
            "careline_ami_reconnects",
            "AMI connection attempts after the first",
            ["server"],
            registry=registry,
        )
        self.login_failures = Counter(
            "careline_ami_login_failures", "AMI logins Asterisk refused", ["server"], registry=registry
        )
        self.events = Counter(
            "careline_ami_events", "AMI frames Careline decoded and used", ["server"], registry=registry
        )
        self.skipped = Counter(
            "careline_ami_frames_skipped", "Malformed AMI frames skipped", ["server"], registry=registry
        )
        self.calls_active = Gauge("careline_calls_active", "Calls in progress", ["server"], registry=registry)
        self.calls_ended = Counter(
            "careline_calls_ended", "Calls ended", ["server", "direction", "disposition"], registry=registry
        )
        self.flush_seconds = Histogram(
            "careline_call_flush_seconds",
            "Time to write one batch of calls",
            ["server"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )


@dataclass
class RowState:
    """What the recorder has written about a call (kept on `Call.row`)."""

    context_id: uuid.UUID = field(default_factory=uuid.uuid4)
    id: int | None = None
    # the numbers as written (E.164 when they parse), kept with what they were read from
    numbers: dict[str | None, str | None] = field(default_factory=dict)
    identity: Identity | None = None
    alert_id: int | None = None
    presses_handled: int = 0
    published: set[str] = field(default_factory=set)
    # the row as last committed: a call touched by events that change nothing in it is not rewritten
    written: tuple[Any, ...] | None = None
    # the context id as the JSON documents carry it (made once, not once a write)
    context_text: str = field(init=False)

    def __post_init__(self) -> None:
        self.context_text = str(self.context_id)


def _row(call: Call) -> RowState:
    if call.row is None:
        call.row = RowState()
    state: RowState = call.row
    return state


def batch_json(rows: list[Any]) -> str:
    """A batch's rows as JSON text (tuples as arrays, StrEnums as their values), for `$2::text::jsonb`."""
    return orjson.dumps(rows).decode()


def _when(at: float | None) -> dt.datetime | None:
    return None if at is None else dt.datetime.fromtimestamp(at, dt.UTC)


# The batch goes as one JSON array of rows, which PostgreSQL (on its own core) takes apart, instead
# of asyncpg encoding two dozen arrays element by element. The array is written by orjson and
# sent as text (`batch_json`): a batch is thousands of rows, and json.dumps took seven times as long.
UPSERT_CALLS = """
INSERT INTO calls AS c (server, linkedid, direction, caller_number, called_number, did, emergency, party,
    resident_id, device_id, provider_id, team_id, alert_id, attempt_id, queue, operator, arrived_at,
    answered_at, ended_at, wait_seconds, talk_seconds, disposition, hangup_cause, resynced, context_id,
    updated_at)
SELECT $1, r->>0, r->>1, r->>2, r->>3, r->>4, (r->>5)::bool, r->>6, (r->>7)::bigint, (r->>8)::bigint,
    (r->>9)::bigint, (r->>10)::bigint, (r->>11)::bigint,
    (SELECT a.id FROM call_attempts a WHERE a.action_id = r->>12), r->>13, r->>14,
    to_timestamp((r->>15)::float8), to_timestamp((r->>16)::float8), to_timestamp((r->>17)::float8),
    (r->>18)::int, (r->>19)::int, r->>20, (r->>21)::smallint, (r->>22)::bool, (r->>23)::uuid, now()
FROM jsonb_array_elements($2::text::jsonb) AS r
ON CONFLICT (server, linkedid) DO UPDATE SET
    caller_number = EXCLUDED.caller_number, called_number = EXCLUDED.called_number,
    emergency = EXCLUDED.emergency, party = EXCLUDED.party, resident_id = EXCLUDED.resident_id,
    device_id = EXCLUDED.device_id, provider_id = EXCLUDED.provider_id, team_id = EXCLUDED.team_id,
    alert_id = COALESCE(EXCLUDED.alert_id, c.alert_id),
    attempt_id = COALESCE(EXCLUDED.attempt_id, c.attempt_id),
    queue = EXCLUDED.queue, operator = EXCLUDED.operator, answered_at = EXCLUDED.answered_at,
    ended_at = EXCLUDED.ended_at, wait_seconds = EXCLUDED.wait_seconds, talk_seconds = EXCLUDED.talk_seconds,
    disposition = EXCLUDED.disposition, hangup_cause = EXCLUDED.hangup_cause,
    resynced = c.resynced OR EXCLUDED.resynced, updated_at = now()
-- an ended call is history: a duplicated Linkedid never reopens it
WHERE c.ended_at IS NULL
RETURNING id, linkedid
"""
# The ids come back as two arrays in one row, which the driver reads in C, not a record a call.
UPSERT_CALLS_IDS = f"""
WITH written AS ({UPSERT_CALLS})
SELECT array_agg(linkedid ORDER BY id), array_agg(id ORDER BY id) FROM written
"""

# Many events at once: the call lane appends a few per call, and one INSERT per event
# (append_event) would be the recorder's bottleneck under load. Rows as one JSON array, as above;
# their ids as one array, in the order of the rows (ids are drawn as the rows are inserted).
INSERT_EVENTS = """
WITH written AS (
    INSERT INTO events (occurred_at, subject_type, subject_id, kind, actor, context_id, data)
    SELECT to_timestamp((e->>0)::float8), 'call', (e->>1)::bigint, e->>2, $1, (e->>3)::uuid, e->4
    FROM jsonb_array_elements($2::text::jsonb) AS e
    RETURNING id
)
SELECT array_agg(id ORDER BY id) FROM written
"""

OPEN_CALLS = """
SELECT id, linkedid, direction, caller_number, called_number, did, emergency, party, resident_id, device_id,
       provider_id, team_id, alert_id, queue, operator, arrived_at, answered_at, context_id,
       (SELECT a.action_id FROM call_attempts a WHERE a.id = calls.attempt_id) AS attempt
FROM calls WHERE server = $1 AND ended_at IS NULL
"""


# The two below are made for every call and every event of a batch, and never leave the recorder:
# named tuples, which cost a fifth of a frozen dataclass to make.


class _Written(NamedTuple):
    """What a transaction wrote about one call, to be marked on its RowState once committed."""

    call: Call
    identity: Identity | None
    alert_id: int | None
    call_id: int | None
    published: set[str]
    presses: int
    row: tuple[Any, ...] | None


class _Pending(NamedTuple):
    """An event of a call, before its row is written."""

    kind: str
    call: Call
    state: RowState
    call_id: int
    data: dict[str, Any]
    at: float


class CallRecorder:
    """Writes one server's calls; owns its task, which a `wake()` (once per socket read) sets going."""

    def __init__(
        self,
        runtime: Runtime,
        server: str,
        tracker: CallTracker,
        desk: AlertDesk,
        metrics: TelephonyMetrics,
        *,
        sleep: Sleep = real_sleep,
    ) -> None:
        self.runtime = runtime
        self.server = server
        self.tracker = tracker
        self.desk = desk
        self.metrics = metrics
        self.sleep = sleep
        self.actor = Actor(f"ami:{server}")
        self.book = runtime.phones
        self.updates: list[AttemptUpdate] = []
        self.last_error: str | None = None
        self.written = 0
        self._ended_counters: dict[tuple[Direction, Disposition], Any] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        # phonenumbers reads its metadata and compiles its patterns on first use (tens of ms):
        # paid here at start, not by the first caller
        self.book.try_normalise(_SAMPLE_NUMBER)
        self._task = asyncio.create_task(self._run(), name=f"calls:{self.server}")

    async def stop(self) -> None:
        """Write what is left (when the database lets us), then end the task."""
        if self._task is None:
            return
        try:
            async with asyncio.timeout(5):
                await self.settled()
        except TimeoutError:
            log.warning(
                "calls of %s not all written at stop; the re-sync at next start settles them", self.server
            )
        await cancel_and_wait(self._task)
        self._task = None

    def wake(self) -> None:
        self._idle.clear()
        self._wake.set()

    def note(self, update: AttemptUpdate) -> None:
        self.updates.append(update)
        self.wake()

    async def settled(self) -> None:
        """Until everything the tracker has told us is written (tests and shutdown use it)."""
        while self._pending_work():
            self.wake()
            await self._idle.wait()

    def _pending_work(self) -> bool:
        return bool(self.tracker.changed or self.tracker.presses or self.updates) or not self._idle.is_set()

    async def _run(self) -> None:
        failures = 0
        last = 0.0
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            # Under load, batch: at most one write every BATCH_SECONDS, so a busy Asterisk costs a
            # few large transactions instead of one per socket read; an idle one is written at once.
            pause = last + BATCH_SECONDS - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            self._wake.clear()
            last = loop.time()
            try:
                await self.flush()
            except DATABASE_ERRORS as exc:
                failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                delay = min(30.0, 0.5 * 2**failures)
                log.warning(
                    "could not write calls of %s (%s); trying again in %.1f s", self.server, exc, delay
                )
                await self.sleep(delay, "database")
                self._wake.set()
                continue
            except Exception as exc:
                # A bug must not stop call recording for good: the batch is kept and retried.
                failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("writing calls of %s failed", self.server)
                await self.sleep(min(30.0, 0.5 * 2**failures), "database")
                self._wake.set()
                continue
            failures = 0
            self.last_error = None
            if not self._wake.is_set():
                self._idle.set()

    # -- one batch ----------------------------------------------------------------------------

    async def flush(self) -> None:
        calls = self.tracker.take_changed()
        presses = self.tracker.take_presses()
        updates, self.updates = self.updates, []
        if not (calls or presses or updates):
            return
        started = time.perf_counter()
        try:
            events, done = await self._write([c for c in calls if c.ready], presses, updates)
        except BaseException:
            # Nothing was written: everything waits for the next try, newer changes kept.
            for call in calls:
                self.tracker.changed.setdefault(call.linkedid, call)
            self.tracker.presses[:0] = presses
            self.updates[:0] = updates
            raise
        for written in done:
            self._committed(written)
        self.written += len(calls)
        self.metrics.flush_seconds.labels(self.server).observe(time.perf_counter() - started)
        self.metrics.calls_active.labels(self.server).set(len(self.tracker.calls))
        await self.runtime.bus.publish(*events)

    async def _write(
        self, calls: list[Call], presses: list[ButtonPress], updates: list[AttemptUpdate]
    ) -> tuple[list[DomainEvent], list[_Written]]:
        """One transaction; returns the events to publish and what to mark once it committed."""
        events: list[DomainEvent] = []
        done: list[_Written] = []
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            identities = await self._identify(conn, calls)
            alerts = await self._raise_alerts(conn, calls, identities, events)
            for press in presses:
                events.extend(await self._raise_for_press(conn, press, None))
            ids, written = await self._upsert(conn, calls, identities, alerts)
            pending = self._transitions(calls, identities, ids)
            events.extend(await self._append(conn, pending))
            for update in updates:
                events.extend(await apply_update(conn, update, self.actor.name))
            for call in calls:
                if call.attempt is not None:
                    events.extend(await self._attempt_of(conn, call, call.attempt, ids))

        published: dict[str, set[str]] = {}
        for transition in pending:
            published.setdefault(transition.call.linkedid, set()).add(transition.kind)
        for call in calls:
            linkedid = call.linkedid
            done.append(
                _Written(
                    call,
                    identities.get(linkedid),
                    alerts.get(linkedid),
                    ids.get(linkedid),
                    published.get(linkedid, set()),
                    len(call.presses),
                    written.get(linkedid),
                )
            )
        return events, done

    def _committed(self, written: _Written) -> None:
        state = _row(written.call)
        state.identity = state.identity or written.identity
        state.alert_id = state.alert_id or written.alert_id
        state.id = state.id or written.call_id
        state.presses_handled = max(state.presses_handled, written.presses)
        state.published |= written.published
        if written.row is not None:
            state.written = written.row
        if "call.ended" in written.published:
            call = written.call
            self._ended_counter(call.direction, call.disposition or Disposition.FAILED).inc()

    def _ended_counter(self, direction: Direction, disposition: Disposition) -> Any:
        """The calls_ended child of one direction and disposition (`labels` is slow for every call)."""
        key = (direction, disposition)
        counter = self._ended_counters.get(key)
        if counter is None:
            counter = self._ended_counters[key] = self.metrics.calls_ended.labels(
                self.server, direction.value, disposition.value
            )
        return counter

    async def _identify(self, conn: Conn, calls: list[Call]) -> dict[str, Identity]:
        """Who each call's far end is; a call keeps what it was identified as the first time."""
        identities: dict[str, Identity] = {}
        numbers: dict[str, str] = {}
        for call in calls:
            # every call gets its RowState here, the first step of a write; the later ones read call.row
            known = _row(call).identity
            if known is not None:
                identities[call.linkedid] = known
                continue
            e164 = normalised(self.book, call.far_number) if call.far_number else None
            if e164 is None:
                identities[call.linkedid] = UNKNOWN
            else:
                numbers[call.linkedid] = e164
        if numbers:
            found = await identify_numbers(conn, numbers.values())
            for linkedid, e164 in numbers.items():
                identities[linkedid] = found.get(e164, UNKNOWN)
        return identities

    def _needs_alert(self, call: Call, identity: Identity) -> bool:
        """An inbound call on an emergency DID, from an SOS unit's line, or with an SOS press on it."""
        return call.direction is Direction.INBOUND and (
            call.emergency or identity.sos_device or call.sos_pressed
        )

    async def _raise_alerts(
        self, conn: Conn, calls: list[Call], identities: dict[str, Identity], events: list[DomainEvent]
    ) -> dict[str, int]:
        raised: dict[str, int] = {}
        for call in calls:
            state = _row(call)
            identity = identities[call.linkedid]
            new_presses = call.presses[state.presses_handled :] if call.presses else []
            if state.alert_id is not None:
                # the call already raised its alert: a press on it is the same emergency, noted on the call
                for noted in new_presses:
                    events.extend(await self._note_press(conn, call, state, noted))
                continue
            if not self._needs_alert(call, identity):
                for other in new_presses:
                    events.extend(await self._raise_for_press(conn, other, call))
                continue
            press = next((p for p in call.presses if p.button in SOS_BUTTONS), None)
            device_id = identity.device_id
            resident_id = identity.resident_id
            if press is not None and press.device:
                device = await device_by_serial(conn, press.device)
                if device is not None:
                    device_id, resident_id = device.id, device.resident_id or resident_id
            result = await self.desk.raise_alert(
                conn,
                source=AlertSource.CALL,
                kind=AlertKind.SOS,
                resident_id=resident_id,
                device_id=device_id,
                context=self._alert_context(call, press),
                actor=self.actor,
                context_id=state.context_id,
                at=_when(press.at if press else call.arrived_at),
            )
            events.extend(result.events)
            raised[call.linkedid] = result.alert.id
        return raised

    def _alert_context(self, call: Call, press: ButtonPress | None) -> dict[str, Any]:
        context: dict[str, Any] = {"server": self.server, "linkedid": call.linkedid, "did": call.did}
        if press is not None:
            context |= {"button": press.button, "device": press.device}
        if call.emergency and call.did:
            context["emergency_did"] = call.did
        return context

    async def _note_press(
        self, conn: Conn, call: Call, state: RowState, press: ButtonPress
    ) -> list[DomainEvent]:
        if state.alert_id is None:
            return []
        event = await append_event(
            conn,
            subject_type="alert",
            subject_id=state.alert_id,
            kind="alert.button_pressed",
            actor=self.actor.name,
            context_id=state.context_id,
            data={"device": press.device, "button": press.button, "linkedid": call.linkedid},
            at=_when(press.at),
        )
        return [event]

    async def _raise_for_press(self, conn: Conn, press: ButtonPress, call: Call | None) -> list[DomainEvent]:
        """A press the dialplan reported with no emergency call to hang it on (or a service button)."""
        if press.button not in SOS_BUTTONS:
            log.info("button %s pressed on server %s: not an SOS, nothing raised", press.button, self.server)
            return []
        device = await device_by_serial(conn, press.device) if press.device else None
        resident_id = device.resident_id if device else None
        if resident_id is None and press.phone:
            e164 = normalised(self.book, press.phone)
            residents = await find_residents_by_phone(conn, e164) if e164 else []
            resident_id = residents[0].id if residents else None
        context_id = _row(call).context_id if call is not None else uuid.uuid4()
        result = await self.desk.raise_alert(
            conn,
            source=AlertSource.CALL,
            kind=AlertKind.SOS,
            resident_id=resident_id,
            device_id=device.id if device else None,
            context={"server": self.server, "button": press.button, "device": press.device},
            actor=self.actor,
            context_id=context_id,
            at=_when(press.at),
        )
        return list(result.events)

    async def _upsert(
        self, conn: Conn, calls: list[Call], identities: dict[str, Identity], alerts: dict[str, int]
    ) -> tuple[dict[str, int], dict[str, tuple[Any, ...]]]:
        """Write the rows that changed; the ids of all, and the rows written."""
        ids: dict[str, int] = {}
        rows: dict[str, tuple[Any, ...]] = {}
        for call in calls:
            state = _row(call)
            values = self._values(call, identities[call.linkedid], alerts.get(call.linkedid, state.alert_id))
            if state.id is not None and values == state.written:
                ids[call.linkedid] = state.id
            else:
                rows[call.linkedid] = values
        if rows:
            written = await conn.fetchrow(UPSERT_CALLS_IDS, self.server, batch_json(list(rows.values())))
            if written is not None and written[0] is not None:
                ids.update(zip(written[0], written[1], strict=True))
        for call in calls:
            if call.linkedid not in ids:
                log.warning("a call on %s reused the Linkedid of an ended call; dropped", self.server)
        return ids, rows

    def _values(self, call: Call, identity: Identity, alert_id: int | None) -> tuple[Any, ...]:
        # Direction, Party and Disposition are StrEnums: the JSON encoder writes a member as its
        # value, so they go as they are (`.value` is a Python-level lookup, three a call a write).
        state: RowState = call.row
        return (
            call.linkedid,
            call.direction,
            self._number(state, call.caller),
            self._number(state, call.called),
            call.did,
            call.emergency or identity.sos_device or call.sos_pressed,
            identity.party,
            identity.resident_id,
            identity.device_id,
            identity.provider_id,
            identity.team_id,
            alert_id,
            call.attempt,
            call.queue,
            call.operator,
            call.arrived_at,
            call.answered_at,
            call.ended_at,
            call.wait_seconds,
            call.talk_seconds,
            call.disposition,
            call.hangup_cause,
            call.resynced,
            state.context_text,
        )

    def _number(self, state: RowState, raw: str | None) -> str | None:
        """The number as a row holds it: E.164 when it parses, else as Asterisk gave it."""
        if raw is None:
            return None
        number = state.numbers.get(raw)
        if number is None:
            number = state.numbers[raw] = normalised(self.book, raw) or raw
        return number

    def _transitions(
        self, calls: list[Call], identities: dict[str, Identity], ids: dict[str, int]
    ) -> list[_Pending]:
        pending: list[_Pending] = []
        server = self.server
        for call in calls:
            state: RowState = call.row
            call_id = ids.get(call.linkedid, state.id)
            if call_id is None:
                continue
            identity = identities[call.linkedid]
            published = state.published
            if "call.ringing" not in published:
                pending.append(
                    _Pending(
                        "call.ringing",
                        call,
                        state,
                        call_id,
                        {
                            "call_id": call_id,
                            "server": server,
                            "direction": call.direction.value,
                            "number": self._number(state, call.far_number),
                            "did": call.did,
                            "emergency": call.emergency or identity.sos_device or call.sos_pressed,
                            "party": identity.party.value,
                            "resident_id": identity.resident_id,
                            "device_id": identity.device_id,
                            "provider_id": identity.provider_id,
                            "team_id": identity.team_id,
                            "attempt": call.attempt,
                        },
                        call.arrived_at,
                    )
                )
                if call.direction is Direction.INBOUND:
                    for resident_id in identity.own_phone_of:
                        pending.append(
                            _Pending(
                                "call.from_resident",
                                call,
                                state,
                                call_id,
                                {"call_id": call_id, "server": server, "resident_id": resident_id},
                                call.arrived_at,
                            )
                        )
            if call.answered_at is not None and "call.answered" not in published:
                pending.append(
                    _Pending(
                        "call.answered",
                        call,
                        state,
                        call_id,
                        {
                            "call_id": call_id,
                            "server": server,
                            "operator": call.operator,
                            "queue": call.queue,
                            "wait_seconds": call.wait_seconds,
                        },
                        call.answered_at,
                    )
                )
            if call.ended_at is not None and "call.ended" not in published:
                disposition = call.disposition
                if disposition is None:
                    continue
                pending.append(
                    _Pending(
                        "call.ended",
                        call,
                        state,
                        call_id,
                        {
                            "call_id": call_id,
                            "server": server,
                            "disposition": disposition.value,
                            "operator": call.operator,
                            "wait_seconds": call.wait_seconds,
                            "talk_seconds": call.talk_seconds,
                            "hangup_cause": call.hangup_cause,
                            "resident_id": identity.resident_id,
                        },
                        call.ended_at,
                    )
                )
        return pending

    async def _append(self, conn: Conn, pending: list[_Pending]) -> list[DomainEvent]:
        if not pending:
            return []
        actor = self.actor.name
        # a call.from_resident event is about the call too, so every event's subject is the call
        event_ids = await conn.fetchval(
            INSERT_EVENTS,
            actor,
            batch_json([(p.at, p.call_id, p.kind, p.state.context_text, p.data) for p in pending]),
        )
        utc = dt.UTC
        when = dt.datetime.fromtimestamp
        return [
            DomainEvent(
                p.kind, "call", p.call_id, p.data, p.state.context_id, actor, when(p.at, utc), event_id
            )
            for p, event_id in zip(pending, event_ids, strict=True)
        ]

    async def _attempt_of(
        self, conn: Conn, call: Call, attempt: str, ids: dict[str, int]
    ) -> list[DomainEvent]:
        """A call Careline placed: tie the attempt to the call; a callback's result is the call's."""
        call_id = ids.get(call.linkedid, _row(call).id)
        if call_id is not None:
            await link_call(conn, attempt, call_id)
        disposition = call.disposition
        if disposition is None or call.ended_at is None:
            return []
        at = dt.datetime.fromtimestamp(call.ended_at, dt.UTC)
        return await finish_from_call(conn, attempt, disposition, at, self.actor.name)

    # -- after a restart ------------------------------------------------------------------------

    async def load_open_calls(self) -> list[Call]:
        """Calls the database has as in progress on this server, for the re-sync to settle."""
        async with self.runtime.pool.acquire() as conn:
            rows = await conn.fetch(OPEN_CALLS, self.server)
        calls = []
        for row in rows:
            direction = Direction(row["direction"])
            call = Call(
                linkedid=row["linkedid"],
                direction=direction,
                arrived_at=row["arrived_at"].timestamp(),
                did=row["did"],
                emergency=row["emergency"],
                caller=row["caller_number"],
                called=row["called_number"],
                queue=row["queue"],
                operator=row["operator"],
                answered_at=row["answered_at"].timestamp() if row["answered_at"] else None,
                ready=True,
                attempt=row["attempt"],
            )
            call.row = RowState(
                context_id=row["context_id"],
                id=row["id"],
                identity=Identity(
                    Party(row["party"] or Party.UNKNOWN.value),
                    resident_id=row["resident_id"],
                    device_id=row["device_id"],
                    provider_id=row["provider_id"],
                    team_id=row["team_id"],
                ),
                alert_id=row["alert_id"],
                published={"call.ringing"} | ({"call.answered"} if row["answered_at"] else set()),
            )
            calls.append(call)
        return calls
