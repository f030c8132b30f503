"""Emergency-lane figures per day (Asia/Shanghai days), today's computed live on request.

Share of alerts acknowledged within the first escalation deadline, seconds to
acknowledgement, to the first team dispatch and to the team on scene (p50/p90), escalations,
false alarms.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from dispatch.database import Conn

FIGURES_QUERY = """
WITH days AS (
    SELECT generate_series($1::date, $2::date, interval '1 day')::date AS day
), a AS (
    SELECT (al.raised_at AT TIME ZONE $3)::date AS day,
           extract(epoch FROM al.acknowledged_at - al.raised_at) AS ack_s,
           extract(epoch FROM (SELECT min(d.dispatched_at) FROM alert_dispatches d WHERE d.alert_id = al.id)
                              - al.raised_at) AS dispatch_s,
           extract(epoch FROM al.on_scene_at - al.raised_at) AS on_scene_s,
           al.state, al.outcome
    FROM alerts al
    WHERE al.raised_at >= ($1::date)::timestamp AT TIME ZONE $3
      AND al.raised_at < ($2::date + 1)::timestamp AT TIME ZONE $3
), e AS (
    SELECT (ev.occurred_at AT TIME ZONE $3)::date AS day,
           count(*) FILTER (WHERE ev.kind = 'alert.escalated') AS escalations,
           count(*) FILTER (WHERE ev.kind = 'alert.cancelled' AND ev.data->>'false_alarm' = 'true')
             AS cancelled_false
    FROM events ev
    WHERE ev.subject_type = 'alert' AND ev.kind IN ('alert.escalated', 'alert.cancelled')
      AND ev.occurred_at >= ($1::date)::timestamp AT TIME ZONE $3
      AND ev.occurred_at < ($2::date + 1)::timestamp AT TIME ZONE $3
    GROUP BY 1
)
SELECT days.day,
       count(a.day) AS alerts,
       count(a.ack_s) AS acknowledged,
       count(*) FILTER (WHERE a.ack_s <= $4) AS acknowledged_in_time,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY a.ack_s) AS ack_p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY a.ack_s) AS ack_p90,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY a.dispatch_s) AS dispatch_p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY a.dispatch_s) AS dispatch_p90,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY a.on_scene_s) AS on_scene_p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY a.on_scene_s) AS on_scene_p90,
       count(*) FILTER (WHERE a.state NOT IN ('resolved', 'cancelled')) AS still_open,
       count(*) FILTER (WHERE a.outcome = 'false_alarm') AS resolved_false,
       coalesce(max(e.escalations), 0) AS escalations,
       coalesce(max(e.cancelled_false), 0) AS cancelled_false
FROM days
LEFT JOIN a ON a.day = days.day
LEFT JOIN e ON e.day = days.day
GROUP BY days.day
ORDER BY days.day
"""


@dataclass(frozen=True)
class DayFigures:
    day: dt.date
    alerts: int
    acknowledged: int
    acknowledged_in_time: int
    share_acknowledged_in_time: float | None
    seconds_to_acknowledge_p50: float | None
    seconds_to_acknowledge_p90: float | None
    seconds_to_dispatch_p50: float | None
    seconds_to_dispatch_p90: float | None
    seconds_to_on_scene_p50: float | None
    seconds_to_on_scene_p90: float | None
    escalations: int
    false_alarms: int
    still_open: int

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["day"] = self.day.isoformat()
        return data


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


async def daily_figures(
    conn: Conn, *, first: dt.date, last: dt.date, tz: str, ack_deadline_seconds: float
) -> list[DayFigures]:
    rows = await conn.fetch(FIGURES_QUERY, first, last, tz, ack_deadline_seconds)
    figures = []
    for r in rows:
        figures.append(
            DayFigures(
                day=r["day"],
                alerts=r["alerts"],
                acknowledged=r["acknowledged"],
                acknowledged_in_time=r["acknowledged_in_time"],
                share_acknowledged_in_time=(
                    round(r["acknowledged_in_time"] / r["alerts"], 4) if r["alerts"] else None
                ),
                seconds_to_acknowledge_p50=_round(r["ack_p50"]),
                seconds_to_acknowledge_p90=_round(r["ack_p90"]),
                seconds_to_dispatch_p50=_round(r["dispatch_p50"]),
                seconds_to_dispatch_p90=_round(r["dispatch_p90"]),
                seconds_to_on_scene_p50=_round(r["on_scene_p50"]),
                seconds_to_on_scene_p90=_round(r["on_scene_p90"]),
                escalations=r["escalations"],
                false_alarms=r["resolved_false"] + r["cancelled_false"],
                still_open=r["still_open"],
            )
        )
    return figures
