"""Team choice: on duty, free, covering the district, nearest — each factor moves the ranking."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from dispatch.alerts import AlertKind, AlertSource, insert_or_join_alert, transition
from dispatch.team_choice import great_circle_km, rank_teams, suggested
from providers.teams import RosterSlot, on_duty
from tests import factories

TZ = ZoneInfo("Asia/Shanghai")
NIGHT = dt.datetime(2026, 11, 24, 2, 0, tzinfo=TZ)  # a Tuesday, 02:00 local


def test_great_circle_distance() -> None:
    # Hohhot city centre to Wuchuan county seat: about 40 km as the crow flies.
    assert great_circle_km(40.84, 111.75, 41.10, 111.45) == pytest.approx(38.4, abs=1.0)
    assert great_circle_km(40.0, 111.0, 40.0, 111.0) == 0


@pytest.mark.parametrize(
    ("shift", "local", "expected"),
    [
        (RosterSlot(2, dt.time(0), dt.time(0)), dt.datetime(2026, 11, 24, 2, 0), True),  # all day Tuesday
        (RosterSlot(2, dt.time(8), dt.time(20)), dt.datetime(2026, 11, 24, 2, 0), False),
        (RosterSlot(2, dt.time(8), dt.time(20)), dt.datetime(2026, 11, 24, 8, 0), True),
        (RosterSlot(2, dt.time(8), dt.time(20)), dt.datetime(2026, 11, 24, 20, 0), False),
        (RosterSlot(1, dt.time(20), dt.time(8)), dt.datetime(2026, 11, 24, 2, 0), True),  # Monday night
        (RosterSlot(2, dt.time(20), dt.time(8)), dt.datetime(2026, 11, 24, 2, 0), False),
        (RosterSlot(7, dt.time(20), dt.time(8)), dt.datetime(2026, 11, 23, 7, 59), True),  # Sunday night
    ],
)
def test_on_duty(shift: RosterSlot, local: dt.datetime, expected: bool) -> None:
    assert on_duty([shift], local) is expected


async def setup_world(pool: asyncpg.Pool) -> dict[str, int]:
    async with pool.acquire() as conn, conn.transaction():
        district, community = await factories.community(conn, district="新城区", lat=40.85, lon=111.70)
        other_district, _ = await factories.community(conn, district="武川县", lat=41.10, lon=111.45)
        resident = await factories.resident(conn, community_id=community, lat=40.85, lon=111.70)
        raised = await insert_or_join_alert(
            conn,
            source=AlertSource.ALARM,
            kind=AlertKind.SOS,
            resident_id=resident,
            device_id=None,
            context={},
            actor="t",
            at=NIGHT,
        )
        near = await factories.team(conn, code="NEAR", district_ids=[district], lat=40.86, lon=111.71)
        far = await factories.team(conn, code="FAR", district_ids=[district], lat=40.80, lon=111.60)
    return {
        "alert": raised.alert.id,
        "near": near,
        "far": far,
        "district": district,
        "other_district": other_district,
        "resident": resident,
    }


async def ranking(pool: asyncpg.Pool, alert_id: int) -> list[str]:
    async with pool.acquire() as conn:
        options = await rank_teams(conn, alert_id, NIGHT, TZ)
    return [o.code for o in options]


async def test_nearest_eligible_team_is_suggested_with_reasons(pool: asyncpg.Pool) -> None:
    world = await setup_world(pool)
    async with pool.acquire() as conn:
        options = await rank_teams(conn, world["alert"], NIGHT, TZ)
    assert [o.code for o in options] == ["NEAR", "FAR"]
    best = suggested(options)
    assert best is not None
    assert best.code == "NEAR"
    assert best.distance_km is not None
    assert best.distance_km < options[1].distance_km  # type: ignore[operator]
    assert any("on duty" in r for r in best.reasons)
    assert any("km" in r for r in best.reasons)


async def test_off_duty_team_moves_down(pool: asyncpg.Pool) -> None:
    world = await setup_world(pool)
    await pool.execute("DELETE FROM team_roster WHERE team_id = $1", world["near"])
    await pool.execute("INSERT INTO team_roster VALUES ($1, 2, '08:00', '20:00')", world["near"])
    assert await ranking(pool, world["alert"]) == ["FAR", "NEAR"]


async def test_busy_team_moves_down(pool: asyncpg.Pool) -> None:
    world = await setup_world(pool)
    async with pool.acquire() as conn:
        _, community = await factories.community(conn, district="新城区")
        other = await factories.resident(conn, community_id=community)
        busy = await insert_or_join_alert(
            conn,
            source=AlertSource.ALARM,
            kind=AlertKind.SOS,
            resident_id=other,
            device_id=None,
            context={},
            actor="t",
            at=NIGHT,
        )
        await transition(conn, busy.alert.id, "acknowledge", actor="op", at=NIGHT)
        await transition(conn, busy.alert.id, "dispatch", actor="op", at=NIGHT, value=world["near"])
    assert await ranking(pool, world["alert"]) == ["FAR", "NEAR"]


async def test_team_outside_its_coverage_moves_down(pool: asyncpg.Pool) -> None:
    world = await setup_world(pool)
    await pool.execute(
        "UPDATE team_districts SET district_id = $2 WHERE team_id = $1",
        world["near"],
        world["other_district"],
    )
    assert await ranking(pool, world["alert"]) == ["FAR", "NEAR"]


async def test_nearer_base_moves_up(pool: asyncpg.Pool) -> None:
    world = await setup_world(pool)
    await pool.execute(
        "UPDATE emergency_teams SET base_lat = 40.851, base_lon = 111.701 WHERE id = $1", world["far"]
    )
    assert await ranking(pool, world["alert"]) == ["FAR", "NEAR"]


async def test_team_already_sent_is_not_suggested_again(pool: asyncpg.Pool) -> None:
    world = await setup_world(pool)
    await pool.execute(
        """INSERT INTO alert_dispatches (alert_id, team_id, dispatched_at, dispatched_by)
           VALUES ($1, $2, now(), 'op')""",
        world["alert"],
        world["near"],
    )
    async with pool.acquire() as conn:
        options = await rank_teams(conn, world["alert"], NIGHT, TZ)
    best = suggested(options)
    assert best is not None
    assert best.code == "FAR"


async def test_suspended_team_is_not_listed(pool: asyncpg.Pool) -> None:
    world = await setup_world(pool)
    await pool.execute("UPDATE emergency_teams SET status = 'suspended' WHERE id = $1", world["near"])
    assert await ranking(pool, world["alert"]) == ["FAR"]
