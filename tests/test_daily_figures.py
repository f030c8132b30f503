"""`GET /api/v1/figures/daily`: one Shanghai day's calls, alerts, orders and SMS against hand-counted
rows (percentiles as PostgreSQL's percentile_cont interpolates them)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import aiohttp
import asyncpg

from dispatch.daily_figures import figures_of_day
from dispatch.database import Conn
from dispatch.service import Service
from dispatch.users import Role, create_user, issue_token
from tests import factories
from tests.call_rows import call_row
from tests.helpers import stop_deadlines
from tests.order_rows import HOME, catalogue, provider
from tests.order_world import make_lane

DAY = dt.date(2026, 11, 24)
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
NEAR_SMS = "+8613500000001"


def local(hour: int, minute: int = 0, second: int = 0, day: int = 24) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, second, tzinfo=SHANGHAI)


async def alert_row(
    conn: Conn,
    kind: str,
    raised: dt.datetime,
    *,
    ack: float | None = None,
    dispatch: float | None = None,
    on_scene: float | None = None,
    resolved: bool = True,
) -> None:
    def after(seconds: float | None) -> dt.datetime | None:
        return None if seconds is None else raised + dt.timedelta(seconds=seconds)

    alert_id = await conn.fetchval(
        """INSERT INTO alerts (kind, source, state, outcome, context_id, raised_at, acknowledged_at,
                               on_scene_at)
           VALUES ($1, 'operator', $2, $3, $4, $5, $6, $7) RETURNING id""",
        kind,
        "resolved" if resolved else "acknowledged",
        "handled_at_home" if resolved else None,
        uuid.uuid4(),
        raised,
        after(ack),
        after(on_scene),
    )
    if dispatch is not None:
        team = await conn.fetchval("SELECT id FROM emergency_teams LIMIT 1")
        await conn.execute(
            """INSERT INTO alert_dispatches (alert_id, team_id, dispatched_at, dispatched_by)
               VALUES ($1, $2, $3, 'user:op')""",
            alert_id,
            team,
            after(dispatch),
        )


async def sms_row(conn: Conn, direction: str, status: str, when: dt.datetime) -> None:
    await conn.execute(
        """INSERT INTO sms_messages (direction, to_e164, from_e164, body, segments, status, purpose,
               idempotency_key, created_at)
           VALUES ($1, '+8613911110001', NULL, '测试', 1, $2, $3, $4, $5)""",
        direction,
        status,
        "reply" if direction == "in" else "family",
        None if direction == "in" else uuid.uuid4().hex,
        when,
    )


async def build_day(config: Any, pool: asyncpg.Pool) -> None:
    lane = make_lane(config, pool, start=local(9).astimezone(dt.UTC))
    async with pool.acquire() as conn:
        await catalogue(conn)
        district, community = await factories.community(conn, lat=HOME[0], lon=HOME[1])
        resident = await factories.resident(conn, community_id=community, lat=HOME[0], lon=HOME[1])
        await provider(conn, name="近邻家政", sms=NEAR_SMS, districts=(district,), capacity=5)
        await factories.team(conn, code="T1", district_ids=[district], lat=HOME[0], lon=HOME[1])
    accepted, cancelled, _offered = [await lane.order(resident) for _ in range(3)]
    await lane.reply(NEAR_SMS, f"1 {await lane.code(accepted.id, 1)}")
    await lane.desk.cancel(cancelled.id, "user:op", reason="老人取消")
    async with pool.acquire() as conn:
        # the offers the lane texted were stamped by the database clock: out of the day they go
        await conn.execute("UPDATE sms_messages SET created_at = created_at - interval '20 years'")

        await call_row(conn, arrived=local(9), wait=10)
        await call_row(conn, arrived=local(9, 30), wait=20)
        await call_row(conn, arrived=local(10, 15), wait=40)
        await call_row(conn, arrived=local(10, 20), wait=100)
        await call_row(conn, arrived=local(10, 40), wait=30, answered=False)  # abandoned
        await call_row(conn, arrived=local(11), wait=None, ended=False)  # still ringing
        failed = await call_row(conn, arrived=local(0, 10), wait=5, answered=False)
        await conn.execute("UPDATE calls SET disposition = 'failed' WHERE id = $1", failed)
        await call_row(conn, arrived=local(12), wait=5, direction="outbound")
        await call_row(conn, arrived=local(23, 59, 30, day=23), wait=1)  # the day before

        await alert_row(conn, "fall", local(9), ack=20, dispatch=60, on_scene=900)
        await alert_row(conn, "fall", local(10), ack=40, dispatch=120, on_scene=1500)
        await alert_row(conn, "sos", local(11), ack=10, resolved=False)
        await alert_row(conn, "sos", local(23, day=23), ack=5)  # the day before

        for direction, status in [
            ("out", "sent"),
            ("out", "delivered"),
            ("out", "failed"),
            ("out", "undelivered"),
            ("out", "queued"),
            ("in", "received"),
        ]:
            await sms_row(conn, direction, status, local(13))
        await sms_row(conn, "out", "sent", local(23, 30, day=23))


EXPECTED: dict[str, Any] = {
    "day": "2026-11-24",
    "calls": {
        "total": 8,
        "inbound": 7,
        "outbound": 1,
        "answered": 4,
        "abandoned": 1,
        "not_connected": 1,
        "ringing": 1,
        # waits 10, 20, 40, 100: p50 = (20 + 40) / 2; p90 at rank 2.7 = 40 + 0.7 * 60
        "answer_seconds": {"p50": 30.0, "p90": 82.0, "max": 100},
        "by_hour": [
            {"hour": h, "total": t, "answered": a, "abandoned": b}
            for h, (t, a, b) in enumerate(
                [(1, 0, 0)] + [(0, 0, 0)] * 8 + [(2, 2, 0), (3, 2, 1), (1, 0, 0)] + [(0, 0, 0)] * 12
            )
        ],
    },
    "alerts": {
        "total": 3,
        "by_kind": [{"kind": "fall", "count": 2}, {"kind": "sos", "count": 1}],
        "acknowledged_in_time": 2,  # within ack_supervisor_seconds (30): 20 s and 10 s
        # 10, 20, 40: p50 20, p90 at rank 1.8 = 20 + 0.8 * 20
        "seconds_to_acknowledge": {"p50": 20.0, "p90": 36.0},
        "seconds_to_dispatch": {"p50": 90.0, "p90": 114.0},
        "seconds_to_on_scene": {"p50": 1200.0, "p90": 1440.0},
        "escalations": 0,
        "false_alarms": 0,
        "still_open": 1,
    },
    "orders": {
        "created": 3,
        "by_state": [
            {"state": state, "count": 1 if state in ("offered", "accepted", "cancelled") else 0}
            for state in (
                "new",
                "offered",
                "accepted",
                "in_service",
                "completed",
                "confirmed",
                "settled",
                "cancelled",
                "unfilled",
                "complaint",
            )
        ],
    },
    "sms": {"sent": 2, "delivered": 1, "failed": 2, "pending": 1, "received": 1},
}


async def test_a_day_of_figures(service: Service, pool: asyncpg.Pool) -> None:
    assert service.runtime is not None
    await stop_deadlines(service)  # the day's offers would expire at once, on the wall clock
    await build_day(service.runtime.config, pool)
    async with pool.acquire() as conn:
        figures = await figures_of_day(conn, DAY, tz=service.runtime.tz, ack_deadline_seconds=30)
        assert figures.as_json() == EXPECTED
        user = await create_user(conn, "wangfang", Role.SUPERVISOR)
        token = await issue_token(conn, user.id)
        empty = await figures_of_day(
            conn, DAY + dt.timedelta(days=2), tz=service.runtime.tz, ack_deadline_seconds=30
        )
    assert empty.calls["answer_seconds"] == {"p50": None, "p90": None, "max": None}
    assert [row["total"] for row in empty.calls["by_hour"]] == [0] * 24
    assert empty.alerts["seconds_to_on_scene"] == {"p50": None, "p90": None}

    async with aiohttp.ClientSession(
        base_url=service.url, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        async with http.get("/api/v1/figures/daily?day=2026-11-24") as resp:
            assert resp.status == 200
            body = await resp.json()
        # live only while DAY is still today in Shanghai (the test world is built around the real date)
        live = dt.datetime.now(SHANGHAI).date() == DAY
        assert body == {**EXPECTED, "timezone": "Asia/Shanghai", "live": live}
        async with http.get("/api/v1/figures/daily") as resp:
            today = await resp.json()
        assert today["live"] is True
        assert today["day"] == dt.datetime.now(SHANGHAI).date().isoformat()
        for bad in ("2026-02-30", "tomorrow", "3000-01-01"):
            async with http.get(f"/api/v1/figures/daily?day={bad}") as resp:
                assert resp.status == 400, bad
                assert (await resp.json())["error"]["field"] == "day"
