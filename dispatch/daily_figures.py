"""Daily operations figures of one local (Asia/Shanghai) day, in shapes a chart takes as they are.

Calls: every call that arrived that day, in and out; of the inbound (hotline) ones how many were
answered, abandoned or neither, the seconds to answer (p50/p90/max), and the same per hour of
the day (24 rows, empty hours included). Alerts raised that day by kind, and seconds from raised
to acknowledged, to the first dispatch and to the team on scene (p50/p90, from
`alert_figures`). Orders taken that day by the state they are in now (every state, in the
order of the lifecycle). SMS queued that day: sent, failed, still pending, and received.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from dispatch.alert_figures import daily_figures
from dispatch.database import Conn
from dispatch.orders import OrderState
from dispatch.service_levels import day_bounds

CALLS_QUERY = """
SELECT count(*) AS total,
       count(*) FILTER (WHERE direction = 'inbound') AS inbound,
       count(*) FILTER (WHERE direction = 'outbound') AS outbound,
       count(*) FILTER (WHERE direction = 'inbound' AND answered_at IS NOT NULL) AS answered,
       count(*) FILTER (WHERE direction = 'inbound' AND disposition = 'abandoned') AS abandoned,
       count(*) FILTER (WHERE direction = 'inbound' AND disposition IN ('failed', 'busy', 'no_answer'))
           AS not_connected,
       count(*) FILTER (WHERE direction = 'inbound' AND answered_at IS NULL AND ended_at IS NULL) AS ringing,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY wait_seconds)
           FILTER (WHERE direction = 'inbound' AND answered_at IS NOT NULL) AS answer_p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY wait_seconds)
           FILTER (WHERE direction = 'inbound' AND answered_at IS NOT NULL) AS answer_p90,
       max(wait_seconds) FILTER (WHERE direction = 'inbound' AND answered_at IS NOT NULL) AS answer_max
FROM calls WHERE arrived_at >= $1 AND arrived_at < $2
"""

CALLS_BY_HOUR = """
SELECT h.hour,
       count(c.id) AS total,
       count(c.id) FILTER (WHERE c.answered_at IS NOT NULL) AS answered,
       count(c.id) FILTER (WHERE c.disposition = 'abandoned') AS abandoned
FROM generate_series(0, 23) AS h(hour)
LEFT JOIN calls c ON c.direction = 'inbound' AND c.arrived_at >= $1 AND c.arrived_at < $2
                 AND extract(hour FROM c.arrived_at AT TIME ZONE $3) = h.hour
GROUP BY h.hour ORDER BY h.hour
"""

ALERTS_BY_KIND = """
SELECT kind, count(*) AS count FROM alerts WHERE raised_at >= $1 AND raised_at < $2
GROUP BY kind ORDER BY count(*) DESC, kind
"""

ORDERS_BY_STATE = """
SELECT state, count(*) AS count FROM service_orders WHERE created_at >= $1 AND created_at < $2 GROUP BY state
"""

SMS_QUERY = """
SELECT count(*) FILTER (WHERE direction = 'out' AND status IN ('sent', 'delivered')) AS sent,
       count(*) FILTER (WHERE direction = 'out' AND status = 'delivered') AS delivered,
       count(*) FILTER (WHERE direction = 'out' AND status IN ('failed', 'undelivered')) AS failed,
       count(*) FILTER (WHERE direction = 'out' AND status IN ('queued', 'sending')) AS pending,
       count(*) FILTER (WHERE direction = 'in') AS received
FROM sms_messages WHERE created_at >= $1 AND created_at < $2
"""


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


@dataclass(frozen=True)
class DailyFigures:
    day: dt.date
    calls: dict[str, Any]
    alerts: dict[str, Any]
    orders: dict[str, Any]
    sms: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "calls": self.calls,
            "alerts": self.alerts,
            "orders": self.orders,
            "sms": self.sms,
        }


async def figures_of_day(
    conn: Conn, day: dt.date, *, tz: ZoneInfo, ack_deadline_seconds: float
) -> DailyFigures:
    start, end = day_bounds(day, tz)
    calls = await conn.fetchrow(CALLS_QUERY, start, end)
    assert calls is not None
    hours = await conn.fetch(CALLS_BY_HOUR, start, end, tz.key)
    (alert_day,) = await daily_figures(
        conn, first=day, last=day, tz=tz.key, ack_deadline_seconds=ack_deadline_seconds
    )
    kinds = await conn.fetch(ALERTS_BY_KIND, start, end)
    states = {r["state"]: r["count"] for r in await conn.fetch(ORDERS_BY_STATE, start, end)}
    sms = await conn.fetchrow(SMS_QUERY, start, end)
    assert sms is not None
    return DailyFigures(
        day=day,
        calls={
            "total": calls["total"],
            "inbound": calls["inbound"],
            "outbound": calls["outbound"],
            "answered": calls["answered"],
            "abandoned": calls["abandoned"],
            "not_connected": calls["not_connected"],
            "ringing": calls["ringing"],
            "answer_seconds": {
                "p50": _seconds(calls["answer_p50"]),
                "p90": _seconds(calls["answer_p90"]),
                "max": calls["answer_max"],
            },
            "by_hour": [dict(r.items()) for r in hours],
        },
        alerts={
            "total": alert_day.alerts,
            "by_kind": [dict(r.items()) for r in kinds],
            "acknowledged_in_time": alert_day.acknowledged_in_time,
            "seconds_to_acknowledge": {
                "p50": alert_day.seconds_to_acknowledge_p50,
                "p90": alert_day.seconds_to_acknowledge_p90,
            },
            "seconds_to_dispatch": {
                "p50": alert_day.seconds_to_dispatch_p50,
                "p90": alert_day.seconds_to_dispatch_p90,
            },
            "seconds_to_on_scene": {
                "p50": alert_day.seconds_to_on_scene_p50,
                "p90": alert_day.seconds_to_on_scene_p90,
            },
            "escalations": alert_day.escalations,
            "false_alarms": alert_day.false_alarms,
            "still_open": alert_day.still_open,
        },
        orders={
            "created": sum(states.values()),
            "by_state": [{"state": s.value, "count": states.get(s.value, 0)} for s in OrderState],
        },
        sms=dict(sms.items()),
    )
