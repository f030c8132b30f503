"""Service levels against hand-counted rows: calls answered within 60 s / 180 s, offers accepted in
time, visits on time; long waits and their reasons; the API and the /metrics gauges."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from dispatch.config import Config
from dispatch.orders import EvidenceSource
from dispatch.service import Service
from dispatch.service_levels import (
    CallNotFound,
    Level,
    NotALongWait,
    day_bounds,
    record_wait_reason,
    service_levels,
    unexplained_waits,
)
from dispatch.users import Role, create_user, issue_token
from dispatch.visit_desk import VisitStep
from tests import factories
from tests.call_rows import call_row
from tests.order_rows import HOME, T0, catalogue, provider
from tests.order_world import Lane, make_lane

NEAR_SMS = "+8613500000001"
MID_SMS = "+8613500000002"
FAR_SMS = "+8613500000003"
DAY = dt.date(2026, 11, 24)  # T0 is 09:00 on this Shanghai day


def shares(levels: list[Level]) -> dict[str, tuple[int, int]]:
    return {level.measure: (level.count, level.of) for level in levels}


@dataclasses.dataclass
class World:
    lane: Lane
    resident: int
    near: int
    mid: int
    far: int


@pytest.fixture
async def world(config: Config, pool: asyncpg.Pool) -> World:
    lane = make_lane(config, pool)
    async with pool.acquire() as conn:
        await catalogue(conn)
        district, community = await factories.community(conn, lat=HOME[0], lon=HOME[1])
        resident = await factories.resident(conn, community_id=community, lat=HOME[0], lon=HOME[1])
        near = await provider(
            conn, name="近邻家政", sms=NEAR_SMS, lat=40.851, lon=111.701, districts=(district,), capacity=9
        )
        mid = await provider(
            conn, name="中和护理", sms=MID_SMS, lat=40.87, lon=111.72, districts=(district,), capacity=9
        )
        far = await provider(
            conn, name="远航服务", sms=FAR_SMS, lat=40.95, lon=111.80, districts=(district,), capacity=9
        )
    return World(lane, resident, near, mid, far)


async def levels_at(world: World, now: dt.datetime, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    async with world.lane.pool.acquire() as conn:
        return shares(
            await service_levels(
                conn, start=start, end=end, now=now, settings=world.lane.runtime.config.service_levels
            )
        )


async def test_calls_answered_within_60_and_180_seconds(world: World, pool: asyncpg.Pool) -> None:
    now = T0 + dt.timedelta(hours=2)  # 11:00 local
    early = T0  # 09:00
    recent = now - dt.timedelta(minutes=30)
    async with pool.acquire() as conn:
        await call_row(conn, arrived=recent, wait=10)  # in both
        await call_row(conn, arrived=recent, wait=60)  # 60 s is within 60 s
        await call_row(conn, arrived=recent, wait=61)  # within 180 s only
        await call_row(conn, arrived=early, wait=200)  # in neither (a long wait)
        await call_row(conn, arrived=early, wait=30, answered=False)  # abandoned: a miss
        await call_row(conn, arrived=early, wait=190, answered=False)  # abandoned after a long wait
        await call_row(conn, arrived=early, wait=500, direction="outbound")  # not a hotline call
        await call_row(conn, arrived=now - dt.timedelta(seconds=100), wait=None, ended=False)  # ringing 100 s
        await call_row(conn, arrived=now - dt.timedelta(seconds=20), wait=None, ended=False)  # ringing 20 s
        # the day's edges in Shanghai: 23:59:30 the day before is out, 00:00:30 is in
        await call_row(conn, arrived=dt.datetime(2026, 11, 23, 15, 59, 30, tzinfo=dt.UTC), wait=5)
        await call_row(conn, arrived=dt.datetime(2026, 11, 23, 16, 0, 30, tzinfo=dt.UTC), wait=5)

    start, end = day_bounds(DAY, world.lane.runtime.tz)
    assert start == dt.datetime(2026, 11, 23, 16, 0, tzinfo=dt.UTC)
    day = await levels_at(world, now, start, end)
    # fast: answered/ended 7, plus the call ringing 100 s (already a miss); met: 10 s, 60 s, 00:00:30
    assert day["calls_answered_within_60s"] == (3, 8)
    # slow: the 7 with an outcome (nobody has rung 180 s yet); met: also the 61 s one
    assert day["calls_answered_within_180s"] == (4, 7)
    hour = await levels_at(world, now, now - dt.timedelta(hours=1), now)
    assert hour["calls_answered_within_60s"] == (2, 4)
    assert hour["calls_answered_within_180s"] == (3, 3)
    # three minutes later the call still ringing has missed 180 s too
    later = await levels_at(world, now + dt.timedelta(seconds=90), start, end)
    assert later["calls_answered_within_180s"] == (4, 8)

    level = Level("calls_answered_within_60s", 3, 8, 97.5)
    assert (level.percent, level.met) == (37.5, False)
    assert Level("x", 0, 0, 99).as_json() == {
        "measure": "x",
        "count": 0,
        "of": 0,
        "percent": None,
        "target_percent": 99,
        "met": None,
    }
    assert Level("x", 39, 40, 97.5).met is True


async def test_offers_accepted_within_their_deadline(world: World) -> None:
    lane = world.lane
    first = await lane.order(world.resident)
    second = await lane.order(world.resident)
    third = await lane.order(world.resident)
    lane.clock.advance(minutes=5)
    await lane.reply(NEAR_SMS, f"1 {await lane.code(first.id, world.near)}")  # in time
    await lane.reply(NEAR_SMS, f"2 {await lane.code(second.id, world.near)}")  # declined: a miss
    await lane.desk.cancel(third.id, "user:op", reason="老人取消")  # withdrawn: does not count
    assert [o["provider_id"] for o in await lane.offers(second.id)] == [world.near, world.mid]
    await lane.fire(seconds=601)  # the middle one let it expire: a miss; the far one is asked
    lane.clock.advance(minutes=3)
    await lane.reply(FAR_SMS, f"1 {await lane.code(second.id, world.far)}")  # in time
    assert [o["outcome"] for o in await lane.offers(second.id)] == ["declined", "expired", "accepted"]

    start, end = day_bounds(DAY, lane.runtime.tz)
    day = await levels_at(world, lane.clock.now, start, end)
    assert day["offers_accepted_in_time"] == (2, 4)

    # an offer past its deadline whose expiry has not fired yet is already a miss
    fourth = await lane.order(world.resident)
    assert [o["outcome"] for o in await lane.offers(fourth.id)] == [None]
    assert (await levels_at(world, lane.clock.now, start, end))["offers_accepted_in_time"] == (2, 4)
    soon = lane.clock.now + dt.timedelta(seconds=601)
    assert (await levels_at(world, soon, start, end))["offers_accepted_in_time"] == (2, 5)


async def test_visits_checked_in_within_their_window(world: World) -> None:
    lane = world.lane
    # windows 12:00-14:00 local, the late one 15:00-17:00, one tomorrow morning
    on_time, late, missed, early, cancelled = [await lane.order(world.resident) for _ in range(5)]
    still_open = await lane.order(world.resident, start_in=dt.timedelta(hours=6))
    tomorrow = await lane.order(world.resident, start_in=dt.timedelta(hours=23))
    for order in (on_time, late, missed, early, cancelled, still_open, tomorrow):
        await lane.reply(NEAR_SMS, f"1 {await lane.code(order.id, world.near)}")
    await lane.desk.cancel(cancelled.id, "user:op", reason="老人住院")
    start = on_time.window_start
    lane.clock.now = start + dt.timedelta(hours=3, minutes=30)  # 15:30: the first windows are over

    async def check_in(order_id: int, at: dt.datetime) -> None:
        await lane.desk.record_visit(
            order_id, VisitStep.CHECK_IN, "user:op", source=EvidenceSource.API, at=at
        )

    await check_in(on_time.id, start + dt.timedelta(minutes=10))
    await check_in(late.id, start + dt.timedelta(hours=2, minutes=30))
    await check_in(early.id, start - dt.timedelta(minutes=10))

    day_start, day_end = day_bounds(DAY, lane.runtime.tz)
    day = await levels_at(world, lane.clock.now, day_start, day_end)
    # due: on time, late, missed (window over, nobody came), early; the open window is not due yet
    assert day["visits_on_time"] == (1, 4)
    await check_in(still_open.id, still_open.window_start + dt.timedelta(minutes=20))
    assert (await levels_at(world, lane.clock.now, day_start, day_end))["visits_on_time"] == (2, 5)
    next_day = await levels_at(
        world, lane.clock.now, *day_bounds(DAY + dt.timedelta(days=1), lane.runtime.tz)
    )
    assert next_day["visits_on_time"] == (0, 0)


async def test_long_waits_ask_for_a_reason(world: World, pool: asyncpg.Pool) -> None:
    seconds = world.lane.runtime.config.service_levels.long_wait_seconds
    assert seconds == 180
    async with pool.acquire() as conn:
        quick = await call_row(conn, arrived=T0, wait=10)
        edge = await call_row(conn, arrived=T0, wait=180)  # exactly 180 s: no reason needed
        long_answered = await call_row(conn, arrived=T0 + dt.timedelta(minutes=1), wait=200)
        long_abandoned = await call_row(conn, arrived=T0 + dt.timedelta(minutes=2), wait=250, answered=False)
        await call_row(conn, arrived=T0, wait=400, direction="outbound")
        yesterday = await call_row(conn, arrived=T0 - dt.timedelta(days=1), wait=300)

        waits, total = await unexplained_waits(conn, long_wait_seconds=seconds)
        assert ([w.call_id for w in waits], total) == ([yesterday, long_abandoned, long_answered], 3)  # by id
        start, end = day_bounds(DAY, world.lane.runtime.tz)
        waits, total = await unexplained_waits(conn, long_wait_seconds=seconds, start=start, end=end, limit=1)
        assert ([w.call_id for w in waits], total) == ([long_abandoned], 2)
        waits, _ = await unexplained_waits(
            conn, long_wait_seconds=seconds, start=start, end=end, before=long_abandoned
        )
        assert [w.call_id for w in waits] == [long_answered]

        at = T0 + dt.timedelta(minutes=10)
        async with conn.transaction():
            wait, event = await record_wait_reason(
                conn,
                long_answered,
                reason="三名坐席同时处理火警",
                actor="user:wangfang",
                at=at,
                long_wait_seconds=180,
            )
        assert (wait.wait_reason, wait.wait_reason_by, wait.wait_reason_at) == (
            "三名坐席同时处理火警",
            "user:wangfang",
            at,
        )
        assert (event.kind, event.subject_type, event.subject_id) == (
            "call.wait_reason",
            "call",
            long_answered,
        )
        row = await conn.fetchrow(
            "SELECT kind, actor, reason, data FROM events WHERE subject_type = 'call' AND subject_id = $1",
            long_answered,
        )
        assert row is not None
        assert dict(row.items()) == {
            "kind": "call.wait_reason",
            "actor": "user:wangfang",
            "reason": "三名坐席同时处理火警",
            "data": {"wait_seconds": 200, "previous": None},
        }
        waits, total = await unexplained_waits(conn, long_wait_seconds=seconds, start=start, end=end)
        assert ([w.call_id for w in waits], total) == ([long_abandoned], 1)

        for call_id in (quick, edge):
            with pytest.raises(NotALongWait):
                await record_wait_reason(
                    conn, call_id, reason="x", actor="user:a", at=at, long_wait_seconds=180
                )
        with pytest.raises(CallNotFound):
            await record_wait_reason(conn, 999999, reason="x", actor="user:a", at=at, long_wait_seconds=180)
        assert await conn.fetchval("SELECT count(*) FROM calls WHERE wait_reason IS NOT NULL") == 1


# -- over HTTP, on the real clock -----------------------------------------------------------------

Api = tuple[aiohttp.ClientSession, Service]


@pytest.fixture
async def api(service: Service) -> AsyncIterator[Api]:
    assert service.runtime is not None
    async with service.runtime.pool.acquire() as conn:
        user = await create_user(conn, "wangfang", Role.OPERATOR)
        token = await issue_token(conn, user.id)
    async with aiohttp.ClientSession(
        base_url=service.url, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        yield http, service


async def fetch(http: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with http.request(method, path, json=body) as resp:
        return resp.status, await resp.json()


async def test_service_levels_api_and_metrics(api: Api) -> None:
    http, service = api
    assert service.runtime is not None
    now = dt.datetime.now(dt.UTC)
    today = now.astimezone(service.runtime.tz).date()
    day_start, _ = day_bounds(today, service.runtime.tz)
    # ten minutes ago (or at midnight, early in the day): still today and within the last hour
    recent = max(now - dt.timedelta(minutes=10), day_start + dt.timedelta(seconds=1))
    async with service.runtime.pool.acquire() as conn:
        old = await call_row(conn, arrived=now - dt.timedelta(days=3), wait=300)
        await call_row(conn, arrived=recent, wait=15)
        await call_row(conn, arrived=recent, wait=100)
        long_wait = await call_row(conn, arrived=recent, wait=240)
        quick = await call_row(conn, arrived=recent, wait=5)

    status, body = await fetch(http, "GET", "/api/v1/service-levels")
    assert status == 200
    assert (body["day"], body["timezone"], body["live"]) == (today.isoformat(), "Asia/Shanghai", True)
    levels = {level["measure"]: level for level in body["levels"]}
    assert levels["calls_answered_within_60s"] | {} == {
        "measure": "calls_answered_within_60s",
        "count": 2,
        "of": 4,
        "percent": 50.0,
        "target_percent": 97.5,
        "met": False,
    }
    assert (levels["calls_answered_within_180s"]["count"], levels["calls_answered_within_180s"]["of"]) == (
        3,
        4,
    )
    assert levels["calls_answered_within_180s"]["target_percent"] == 99.0
    assert levels["offers_accepted_in_time"]["percent"] is None
    hour = {level["measure"]: (level["count"], level["of"]) for level in body["last_hour"]}
    assert hour["calls_answered_within_60s"] == (2, 4)
    assert body["long_waits_without_reason"] == 1

    old_day = (now - dt.timedelta(days=3)).astimezone(service.runtime.tz).date().isoformat()
    status, past = await fetch(http, "GET", f"/api/v1/service-levels?day={old_day}")
    assert (status, past["live"], past["last_hour"]) == (200, False, None)
    assert {lv["measure"]: lv["of"] for lv in past["levels"]}["calls_answered_within_60s"] == 1
    for bad in ("2026-13-01", "2026-W48-1", "20261123", "1999-12-31", "yesterday"):
        status, error = await fetch(http, "GET", f"/api/v1/service-levels?day={bad}")
        assert (status, error["error"]["field"]) == (400, "day"), bad

    status, waits = await fetch(http, "GET", "/api/v1/service-levels/long-waits")
    assert status == 200
    assert ([w["call_id"] for w in waits["items"]], waits["total"], waits["next_before"]) == (
        [long_wait, old],
        2,
        None,
    )
    status, waits = await fetch(http, "GET", "/api/v1/service-levels/long-waits?limit=1")
    assert ([w["call_id"] for w in waits["items"]], waits["next_before"]) == ([long_wait], long_wait)
    status, waits = await fetch(http, "GET", f"/api/v1/service-levels/long-waits?before={long_wait}")
    assert [w["call_id"] for w in waits["items"]] == [old]
    for bad in ("limit=0", "limit=201", "before=x", "before=0", "day=soon"):
        status, error = await fetch(http, "GET", f"/api/v1/service-levels/long-waits?{bad}")
        assert status == 400, bad

    status, given = await fetch(
        http, "POST", f"/api/v1/calls/{long_wait}/wait-reason", {"reason": "系统故障"}
    )
    assert status == 200
    assert (given["call"]["wait_reason"], given["call"]["wait_reason_by"]) == ("系统故障", "user:wangfang")
    status, call = await fetch(http, "GET", f"/api/v1/calls/{long_wait}")
    assert call["call"]["wait_reason"] == "系统故障"
    assert [e["kind"] for e in call["timeline"]] == ["call.wait_reason"]
    status, waits = await fetch(http, "GET", "/api/v1/service-levels/long-waits")
    assert [w["call_id"] for w in waits["items"]] == [old]

    for path, payload, expected in [
        (f"/api/v1/calls/{quick}/wait-reason", {"reason": "x"}, (409, "not_a_long_wait")),
        ("/api/v1/calls/987654/wait-reason", {"reason": "x"}, (404, "not_found")),
        (f"/api/v1/calls/{old}/wait-reason", {"reason": "  "}, (400, "invalid")),
        (f"/api/v1/calls/{old}/wait-reason", {"reason": "x" * 501}, (400, "invalid")),
        (f"/api/v1/calls/{old}/wait-reason", {"reason": "a\x00b"}, (400, "invalid")),
        (f"/api/v1/calls/{old}/wait-reason", [], (400, "invalid")),
        ("/api/v1/calls/99999999999999999999/wait-reason", {"reason": "x"}, (404, "not_found")),
    ]:
        status, error = await fetch(http, "POST", path, payload)
        assert (status, error["error"]["code"]) == expected, path

    async with http.get("/metrics") as resp:
        metrics = await resp.text()
    assert (
        'careline_service_level_percent{measure="calls_answered_within_60s",period="today"} 50.0' in metrics
    )
    assert (
        'careline_service_level_count{measure="calls_answered_within_180s",of="all",period="last_hour"} 4.0'
        in (metrics)
    )
    assert 'careline_service_level_target_percent{measure="calls_answered_within_60s"} 97.5' in metrics
    assert 'careline_service_level_percent{measure="offers_accepted_in_time",period="today"} NaN' in metrics
