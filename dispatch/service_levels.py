"""Service levels: how fast the hotline answers, how providers take offers, whether visits start on time.

Four shares over a period (an Asia/Shanghai day, today so far, or the last hour):

- hotline calls answered within `answer_fast_seconds` and within `answer_slow_seconds`, of the
  inbound calls that arrived in the period and were answered or ended; a call still waiting
  counts as a miss once it has waited longer than the threshold, and an abandoned call is a miss;
- offers accepted before their deadline, of the offers made in the period that were accepted,
  declined or expired (or are past their deadline unanswered); an offer withdrawn by an operator
  or won by another provider of an urgent fan-out says nothing about its provider and is left out;
- visits checked in within the order's window, of the accepted orders whose window started in
  the period and that have checked in or whose window has ended (still open: not yet due).

A call that waited longer than `long_wait_seconds` asks the operator for a reason, stored with the
call (`record_wait_reason`) and listed until then (`unexplained_waits`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from dispatch.config import ServiceLevelsConfig
from dispatch.database import Conn
from dispatch.events import DomainEvent, append_event

MAX_REASON = 500

LEVELS_QUERY = """
WITH c AS (
    SELECT count(*) FILTER (WHERE answered_at IS NOT NULL OR ended_at IS NOT NULL
                            OR $3 - arrived_at > make_interval(secs => $4)) AS fast_of,
           count(*) FILTER (WHERE answered_at IS NOT NULL AND wait_seconds <= $4) AS fast,
           count(*) FILTER (WHERE answered_at IS NOT NULL OR ended_at IS NOT NULL
                            OR $3 - arrived_at > make_interval(secs => $5)) AS slow_of,
           count(*) FILTER (WHERE answered_at IS NOT NULL AND wait_seconds <= $5) AS slow
    FROM calls
    WHERE direction = 'inbound' AND arrived_at >= $1 AND arrived_at < $2
), f AS (
    SELECT count(*) FILTER (WHERE outcome IN ('accepted', 'declined', 'expired')
                            OR (outcome IS NULL AND due_at <= $3)) AS offers_of,
           count(*) FILTER (WHERE outcome = 'accepted' AND answered_at <= due_at) AS offers
    FROM order_offers
    WHERE offered_at >= $1 AND offered_at < $2
), v AS (
    SELECT count(*) FILTER (WHERE checked_in_at IS NOT NULL OR window_end <= $3) AS visits_of,
           count(*) FILTER (WHERE checked_in_at BETWEEN window_start AND window_end) AS visits
    FROM service_orders
    WHERE window_start >= $1 AND window_start < $2
      AND state IN ('accepted', 'in_service', 'completed', 'confirmed', 'settled', 'complaint')
)
SELECT * FROM c, f, v
"""


@dataclass(frozen=True)
class Level:
    """`count` of `of` met the measure; the share against its target (percent)."""

    measure: str
    count: int
    of: int
    target_percent: float

    @property
    def percent(self) -> float | None:
        return None if self.of == 0 else round(100 * self.count / self.of, 2)

    @property
    def met(self) -> bool | None:
        percent = self.percent
        return None if percent is None else percent >= self.target_percent

    def as_json(self) -> dict[str, Any]:
        return {
            "measure": self.measure,
            "count": self.count,
            "of": self.of,
            "percent": self.percent,
            "target_percent": self.target_percent,
            "met": self.met,
        }


def measure_names(settings: ServiceLevelsConfig) -> list[str]:
    return [
        f"calls_answered_within_{settings.answer_fast_seconds}s",
        f"calls_answered_within_{settings.answer_slow_seconds}s",
        "offers_accepted_in_time",
        "visits_on_time",
    ]


async def service_levels(
    conn: Conn, *, start: dt.datetime, end: dt.datetime, now: dt.datetime, settings: ServiceLevelsConfig
) -> list[Level]:
    """The four levels over [start, end), as they stand at `now`."""
    row = await conn.fetchrow(
        LEVELS_QUERY,
        start,
        end,
        now,
        float(settings.answer_fast_seconds),
        float(settings.answer_slow_seconds),
    )
    assert row is not None
    fast, slow, offers, visits = measure_names(settings)
    return [
        Level(fast, row["fast"], row["fast_of"], settings.answer_fast_target_percent),
        Level(slow, row["slow"], row["slow_of"], settings.answer_slow_target_percent),
        Level(offers, row["offers"], row["offers_of"], settings.offers_accepted_target_percent),
        Level(visits, row["visits"], row["visits_of"], settings.visits_on_time_target_percent),
    ]


def day_bounds(day: dt.date, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """The local day as [start, end) instants in UTC."""
    start = dt.datetime.combine(day, dt.time(0), tzinfo=tz)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=tz)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


# -- long waits and their reasons ---------------------------------------------------------------


class WaitReasonError(Exception):
    """A reason that cannot be recorded; `code` is stable for API clients."""

    code = "wait_reason_error"


class CallNotFound(WaitReasonError):
    code = "not_found"


class NotALongWait(WaitReasonError):
    code = "not_a_long_wait"


@dataclass(frozen=True)
class LongWait:
    call_id: int
    arrived_at: dt.datetime
    answered_at: dt.datetime | None
    ended_at: dt.datetime | None
    wait_seconds: int
    disposition: str | None
    caller_number: str | None
    resident_id: int | None
    alert_id: int | None
    queue: str | None
    operator: str | None
    wait_reason: str | None
    wait_reason_by: str | None
    wait_reason_at: dt.datetime | None

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            data[name] = value.isoformat() if isinstance(value, dt.datetime) else value
        return data


LONG_WAIT_COLUMNS = """id AS call_id, arrived_at, answered_at, ended_at, wait_seconds, disposition,
    caller_number, resident_id, alert_id, queue, operator, wait_reason, wait_reason_by, wait_reason_at"""

UNEXPLAINED_FILTER = """
WHERE direction = 'inbound' AND wait_reason IS NULL AND wait_seconds > $1
  AND ($2::timestamptz IS NULL OR arrived_at >= $2) AND ($3::timestamptz IS NULL OR arrived_at < $3)
"""


async def unexplained_waits(
    conn: Conn,
    *,
    long_wait_seconds: int,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    before: int | None = None,
    limit: int = 50,
) -> tuple[list[LongWait], int]:
    """Calls that waited too long and have no reason yet, newest first (ids below `before`); and
    how many there are in all (in the period)."""
    args = (long_wait_seconds, start, end)
    rows = await conn.fetch(
        f"""SELECT {LONG_WAIT_COLUMNS} FROM calls {UNEXPLAINED_FILTER}
              AND ($4::bigint IS NULL OR id < $4)
            ORDER BY id DESC LIMIT $5""",
        *args,
        before,
        limit,
    )
    total = await conn.fetchval(f"SELECT count(*) FROM calls {UNEXPLAINED_FILTER}", *args)
    return [LongWait(**dict(r.items())) for r in rows], int(total)


async def record_wait_reason(
    conn: Conn, call_id: int, *, reason: str, actor: str, at: dt.datetime, long_wait_seconds: int
) -> tuple[LongWait, DomainEvent]:
    """Store why a call waited so long (a second reason replaces the first; the events keep both)."""
    row = await conn.fetchrow(
        "SELECT direction, wait_seconds, wait_reason, context_id FROM calls WHERE id = $1 FOR UPDATE", call_id
    )
    if row is None:
        raise CallNotFound(f"call {call_id} not found")
    wait = row["wait_seconds"]
    if row["direction"] != "inbound" or wait is None or wait <= long_wait_seconds:
        waited = "is still waiting" if wait is None else f"waited {wait} s"
        raise NotALongWait(
            f"call {call_id} {waited}: only an inbound call that waited over {long_wait_seconds} s "
            "takes a wait reason"
        )
    updated = await conn.fetchrow(
        f"""UPDATE calls SET wait_reason = $2, wait_reason_by = $3, wait_reason_at = $4 WHERE id = $1
            RETURNING {LONG_WAIT_COLUMNS}""",
        call_id,
        reason,
        actor,
        at,
    )
    assert updated is not None
    event = await append_event(
        conn,
        subject_type="call",
        subject_id=call_id,
        kind="call.wait_reason",
        actor=actor,
        reason=reason,
        context_id=row["context_id"],
        data={"wait_seconds": wait, "previous": row["wait_reason"]},
        at=at,
    )
    return LongWait(**dict(updated.items())), event
