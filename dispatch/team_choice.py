"""Which emergency team to send: on duty, free, covering the resident's district, nearest.

Every active team is listed with the reasons for its place, so the operator
sees why the first one is suggested and can pick another knowingly.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from dispatch.database import Conn
from providers.teams import RosterSlot, on_duty

EARTH_RADIUS_KM = 6371.0088
BUSY_STATES = ("team_dispatched", "team_acknowledged", "on_scene")


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance: good to a few metres at city scale, which is all ranking needs."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True)
class Place:
    lat: float | None
    lon: float | None
    district_id: int | None


@dataclass(frozen=True)
class TeamOption:
    team_id: int
    code: str
    name: str
    distance_km: float | None
    on_duty: bool
    available: bool
    covers_district: bool
    already_tried: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def eligible(self) -> bool:
        return self.on_duty and self.available and self.covers_district and not self.already_tried


async def alert_place(conn: Conn, alert_id: int) -> Place:
    """Where help must go: the resident's own location, else their community's."""
    row = await conn.fetchrow(
        """SELECT coalesce(r.lat, c.lat) AS lat, coalesce(r.lon, c.lon) AS lon, s.district_id
           FROM alerts a
           LEFT JOIN residents r ON r.id = a.resident_id
           LEFT JOIN communities c ON c.id = r.community_id
           LEFT JOIN streets s ON s.id = c.street_id
           WHERE a.id = $1""",
        alert_id,
    )
    if row is None:
        return Place(None, None, None)
    return Place(row["lat"], row["lon"], row["district_id"])


TEAMS_QUERY = """
SELECT t.id, t.code, t.name, t.base_lat, t.base_lon,
       EXISTS (SELECT 1 FROM team_districts td WHERE td.team_id = t.id AND td.district_id = $1) AS covers,
       EXISTS (SELECT 1 FROM alerts a
               WHERE a.team_id = t.id AND a.state = ANY($2::text[]) AND a.id <> $3) AS busy,
       EXISTS (SELECT 1 FROM alert_dispatches d WHERE d.team_id = t.id AND d.alert_id = $3) AS tried,
       coalesce((SELECT array_agg(ARRAY[r.weekday::text, r.starts::text, r.ends::text])
                 FROM team_roster r WHERE r.team_id = t.id), '{}') AS roster
FROM emergency_teams t
WHERE t.status = 'active'
"""


async def rank_teams(conn: Conn, alert_id: int, now: dt.datetime, tz: ZoneInfo) -> list[TeamOption]:
    """All active teams, the eligible nearest first, each with the reasons for its place."""
    place = await alert_place(conn, alert_id)
    rows = await conn.fetch(TEAMS_QUERY, place.district_id, list(BUSY_STATES), alert_id)
    local = now.astimezone(tz)
    options: list[TeamOption] = []
    for row in rows:
        shifts = [
            RosterSlot(int(w), dt.time.fromisoformat(s), dt.time.fromisoformat(e))
            for w, s, e in row["roster"]
        ]
        distance = (
            round(great_circle_km(place.lat, place.lon, row["base_lat"], row["base_lon"]), 2)
            if place.lat is not None and place.lon is not None
            else None
        )
        duty = on_duty(shifts, local)
        reasons = [
            "在岗 on duty" if duty else "不在值班时间 off duty",
            "空闲 available" if not row["busy"] else "正在处理其他警情 busy on another alert",
            "覆盖该区 covers the district" if row["covers"] else "不覆盖该区 outside its coverage",
        ]
        if distance is not None:
            reasons.append(f"距离 {distance:.1f} km")
        if row["tried"]:
            reasons.append("已派过 already dispatched to this alert")
        options.append(
            TeamOption(
                team_id=row["id"],
                code=row["code"],
                name=row["name"],
                distance_km=distance,
                on_duty=duty,
                available=not row["busy"],
                covers_district=bool(row["covers"]),
                already_tried=bool(row["tried"]),
                reasons=reasons,
            )
        )
    options.sort(
        key=lambda o: (
            not o.eligible,
            o.already_tried,
            not (o.on_duty and o.available),
            not o.covers_district,
            o.distance_km if o.distance_km is not None else math.inf,
            o.team_id,
        )
    )
    return options


def suggested(options: list[TeamOption]) -> TeamOption | None:
    return next((o for o in options if o.eligible), None)
