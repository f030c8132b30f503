"""Alerts (紧急求助): the state machine, and the one way to raise one.

raised → acknowledged → team_dispatched → team_acknowledged → on_scene → resolved,
and cancelled. Each transition is one `UPDATE … WHERE state = ANY(allowed)
RETURNING`, so when two operators (or an operator and a team's SMS) race,
exactly one wins and the other gets `IllegalTransition` naming the state it
found. Every transition appends an event row in the same transaction.

Functions here take a connection and run in the caller's transaction; they
return the events to publish once the caller has committed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import asyncpg

from dispatch.database import Conn
from dispatch.events import EVENT_COLUMNS, DomainEvent, append_event, domain_event


class AlertState(StrEnum):
    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    TEAM_DISPATCHED = "team_dispatched"
    TEAM_ACKNOWLEDGED = "team_acknowledged"
    ON_SCENE = "on_scene"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"

    @property
    def is_open(self) -> bool:
        return self not in (AlertState.RESOLVED, AlertState.CANCELLED)


OPEN_STATES = tuple(s.value for s in AlertState if s.is_open)


class AlertKind(StrEnum):
    SOS = "sos"
    MEDICAL = "medical"
    FALL = "fall"
    FIRE = "fire"
    GAS = "gas"
    WATER = "water"
    INACTIVITY = "inactivity"
    TAMPER = "tamper"
    OTHER = "other"


class AlertSource(StrEnum):
    ALARM = "alarm"
    CALL = "call"
    OPERATOR = "operator"
    CARE_PLAN = "care_plan"
    API = "api"


class Outcome(StrEnum):
    HANDLED_AT_HOME = "handled_at_home"
    HOSPITAL = "hospital"
    FALSE_ALARM = "false_alarm"
    NO_ACCESS = "no_access"


class AlertError(Exception):
    """An alert action that cannot be done; `code` is stable for API clients."""

    code = "alert_error"


class AlertNotFound(AlertError):
    code = "not_found"


class IllegalTransition(AlertError):
    code = "illegal_transition"

    def __init__(self, alert_id: int, action: str, current: AlertState) -> None:
        super().__init__(f"alert {alert_id} is {current.value}: cannot {action}")
        self.alert_id, self.action, self.current = alert_id, action, current


class ReasonRequired(AlertError):
    code = "reason_required"


@dataclass(frozen=True)
class Alert:
    id: int
    resident_id: int | None
    device_id: int | None
    kind: AlertKind
    source: AlertSource
    state: AlertState
    outcome: Outcome | None
    context_id: uuid.UUID
    context: dict[str, Any]
    triggers: int
    raised_at: dt.datetime
    acknowledged_at: dt.datetime | None
    acknowledged_by: str | None
    team_id: int | None
    dispatched_at: dt.datetime | None
    team_acknowledged_at: dt.datetime | None
    on_scene_at: dt.datetime | None
    handoff_120_at: dt.datetime | None
    closed_at: dt.datetime | None
    escalations: int
    family_notified_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Alert:
        values = {name: row[name] for name in cls.__dataclass_fields__}
        values["kind"] = AlertKind(values["kind"])
        values["source"] = AlertSource(values["source"])
        values["state"] = AlertState(values["state"])
        values["outcome"] = Outcome(values["outcome"]) if values["outcome"] else None
        return cls(**values)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            data[name] = value.isoformat() if isinstance(value, dt.datetime) else value
        data["context_id"] = str(self.context_id)
        return data


COLUMNS = """id, resident_id, device_id, kind, source, state, outcome, context_id, context, triggers,
    raised_at, acknowledged_at, acknowledged_by, team_id, dispatched_at, team_acknowledged_at, on_scene_at,
    handoff_120_at, closed_at, escalations, family_notified_at"""


async def get_alert(conn: Conn, alert_id: int, *, for_update: bool = False) -> Alert:
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM alerts WHERE id = $1" + (" FOR UPDATE" if for_update else ""), alert_id
    )
    if row is None:
        raise AlertNotFound(f"alert {alert_id} not found")
    return Alert.from_row(row)


@dataclass(frozen=True)
class Raised:
    alert: Alert
    created: bool
    events: list[DomainEvent]


INSERT_FOR_RESIDENT = f"""
INSERT INTO alerts (resident_id, device_id, kind, source, context_id, context, raised_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (resident_id, kind) WHERE state NOT IN ('resolved', 'cancelled') AND resident_id IS NOT NULL
DO UPDATE SET triggers = alerts.triggers + 1
RETURNING {COLUMNS}, (xmax = 0) AS created
"""

INSERT_FOR_DEVICE = f"""
INSERT INTO alerts (resident_id, device_id, kind, source, context_id, context, raised_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (device_id, kind)
    WHERE state NOT IN ('resolved', 'cancelled') AND resident_id IS NULL AND device_id IS NOT NULL
DO UPDATE SET triggers = alerts.triggers + 1
RETURNING {COLUMNS}, (xmax = 0) AS created
"""

INSERT_ANONYMOUS = f"""
INSERT INTO alerts (resident_id, device_id, kind, source, context_id, context, raised_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING {COLUMNS}, true AS created
"""


def _with_event(insert: str) -> str:
    """The raise (or join) and its event row in one statement: every press of an SOS button is
    one round trip less before the sender is answered. The event's data is what
    `insert_or_join_alert` gives its DomainEvent."""
    return f"""
WITH a AS ({insert}),
e AS (
    INSERT INTO events ({EVENT_COLUMNS})
    SELECT $7, 'alert', a.id,
           CASE WHEN a.created THEN 'alert.raised' ELSE 'alert.triggered_again' END,
           $8, NULL, CASE WHEN a.created THEN '{AlertState.RAISED.value}' END, '', a.context_id,
           jsonb_build_object('source', $4::text, 'kind', $3::text, 'triggers', a.triggers,
                              'context', $6::jsonb)
    FROM a
    RETURNING id
)
SELECT a.*, e.id AS event_id FROM a, e
"""


RAISE_FOR_RESIDENT = _with_event(INSERT_FOR_RESIDENT)
RAISE_FOR_DEVICE = _with_event(INSERT_FOR_DEVICE)
RAISE_ANONYMOUS = _with_event(INSERT_ANONYMOUS)


async def insert_or_join_alert(
    conn: Conn,
    *,
    source: AlertSource,
    kind: AlertKind,
    resident_id: int | None,
    device_id: int | None,
    context: dict[str, Any],
    actor: str,
    at: dt.datetime,
    context_id: uuid.UUID | None = None,
) -> Raised:
    """Open an alert, or join the open one for that resident (or unknown device) and kind."""
    if resident_id is None and device_id is not None:
        resident_id = await conn.fetchval("SELECT resident_id FROM devices WHERE id = $1", device_id)
    if resident_id is not None:
        query = RAISE_FOR_RESIDENT
    elif device_id is not None:
        query = RAISE_FOR_DEVICE
    else:
        query = RAISE_ANONYMOUS
    fresh_context_id = context_id or uuid.uuid4()
    row = await conn.fetchrow(
        query, resident_id, device_id, kind.value, source.value, fresh_context_id, context, at, actor
    )
    assert row is not None
    alert = Alert.from_row(row)
    created = bool(row["created"])
    event = domain_event(
        event_id=row["event_id"],
        subject_type="alert",
        subject_id=alert.id,
        kind="alert.raised" if created else "alert.triggered_again",
        actor=actor,
        occurred_at=at,
        to_state=AlertState.RAISED.value if created else None,
        context_id=alert.context_id,
        data={"source": source.value, "kind": kind.value, "triggers": alert.triggers, "context": context},
    )
    return Raised(alert=alert, created=created, events=[event])


# action → (states it may start from, state it leads to)
TRANSITIONS: dict[str, tuple[frozenset[AlertState], AlertState]] = {
    "acknowledge": (frozenset({AlertState.RAISED}), AlertState.ACKNOWLEDGED),
    "dispatch": (
        frozenset({AlertState.ACKNOWLEDGED, AlertState.TEAM_DISPATCHED, AlertState.TEAM_ACKNOWLEDGED}),
        AlertState.TEAM_DISPATCHED,
    ),
    "team_acknowledge": (frozenset({AlertState.TEAM_DISPATCHED}), AlertState.TEAM_ACKNOWLEDGED),
    # A team that texts "arrived" without having acknowledged has plainly acknowledged.
    "on_scene": (frozenset({AlertState.TEAM_DISPATCHED, AlertState.TEAM_ACKNOWLEDGED}), AlertState.ON_SCENE),
    "resolve": (
        frozenset(
            {
                AlertState.ACKNOWLEDGED,
                AlertState.TEAM_DISPATCHED,
                AlertState.TEAM_ACKNOWLEDGED,
                AlertState.ON_SCENE,
            }
        ),
        AlertState.RESOLVED,
    ),
    "cancel": (
        frozenset(
            {
                AlertState.RAISED,
                AlertState.ACKNOWLEDGED,
                AlertState.TEAM_DISPATCHED,
                AlertState.TEAM_ACKNOWLEDGED,
            }
        ),
        AlertState.CANCELLED,
    ),
}

# What each action stamps on the row besides the state: a SET clause over $4…, and the
# names of the values that fill those placeholders in order.
_SETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "acknowledge": ("acknowledged_at = $4, acknowledged_by = $5", ("at", "actor")),
    "dispatch": ("dispatched_at = $4, team_id = $5, team_acknowledged_at = NULL", ("at", "value")),
    "team_acknowledge": ("team_acknowledged_at = $4", ("at",)),
    "on_scene": ("on_scene_at = $4, team_acknowledged_at = coalesce(team_acknowledged_at, $4)", ("at",)),
    "resolve": ("outcome = $4, closed_at = $5", ("value", "at")),
    "cancel": ("closed_at = $4", ("at",)),
}
_RETURNING = ", ".join("a." + c.strip() for c in COLUMNS.split(","))


@dataclass(frozen=True)
class Transition:
    before: AlertState
    alert: Alert
    event: DomainEvent


async def transition(
    conn: Conn,
    alert_id: int,
    action: str,
    *,
    actor: str,
    at: dt.datetime,
    reason: str = "",
    value: Any = None,
    data: dict[str, Any] | None = None,
) -> Transition:
    """Move an alert by `action`; IllegalTransition (naming the current state) when it may not."""
    allowed, target = TRANSITIONS[action]
    sets, names = _SETS[action]
    values = {"at": at, "actor": actor, "value": value}
    row = await conn.fetchrow(
        f"""WITH before AS (SELECT id, state FROM alerts WHERE id = $1 FOR UPDATE)
            UPDATE alerts a SET state = $2, {sets}
            FROM before WHERE a.id = before.id AND before.state = ANY($3::text[])
            RETURNING {_RETURNING}, before.state AS before_state""",
        alert_id,
        target.value,
        [s.value for s in allowed],
        *(values[name] for name in names),
    )
    if row is None:
        current = await conn.fetchval("SELECT state FROM alerts WHERE id = $1", alert_id)
        if current is None:
            raise AlertNotFound(f"alert {alert_id} not found")
        raise IllegalTransition(alert_id, action, AlertState(current))
    alert = Alert.from_row(row)
    before = AlertState(row["before_state"])
    event = await append_event(
        conn,
        subject_type="alert",
        subject_id=alert_id,
        kind=f"alert.{target.value}" if before != target else f"alert.{action}",
        actor=actor,
        from_state=before.value,
        to_state=target.value,
        reason=reason,
        context_id=alert.context_id,
        data=data,
        at=at,
    )
    return Transition(before=before, alert=alert, event=event)


async def note(
    conn: Conn,
    alert_id: int,
    *,
    kind: str,
    actor: str,
    at: dt.datetime,
    reason: str = "",
    data: dict[str, Any],
) -> DomainEvent:
    """An event on the alert's timeline that does not change its state (a note, a 120 hand-off, a step)."""
    alert = await get_alert(conn, alert_id)
    return await append_event(
        conn,
        subject_type="alert",
        subject_id=alert_id,
        kind=kind,
        actor=actor,
        reason=reason,
        context_id=alert.context_id,
        data=data,
        at=at,
    )


async def list_alerts(
    conn: Conn,
    *,
    since: dt.datetime | None = None,
    state: AlertState | None = None,
    resident_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Alert], int]:
    """Open alerts first (oldest first: the longest waiting is the most urgent), then closed, newest first."""
    where = """($1::timestamptz IS NULL OR raised_at >= $1) AND ($2::text IS NULL OR state = $2)
               AND ($3::bigint IS NULL OR resident_id = $3)"""
    args = (since, state.value if state else None, resident_id)
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM alerts WHERE {where}
            ORDER BY (state IN ('resolved', 'cancelled')),
                     CASE WHEN state IN ('resolved', 'cancelled') THEN NULL ELSE raised_at END ASC,
                     raised_at DESC, id DESC
            LIMIT $4 OFFSET $5""",
        *args,
        limit,
        offset,
    )
    total = await conn.fetchval(f"SELECT count(*) FROM alerts WHERE {where}", *args)
    return [Alert.from_row(r) for r in rows], int(total)
