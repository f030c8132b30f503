"""The floor's snapshot: open alerts with their next escalation step, orders marked overdue, open notices
critical first."""

from __future__ import annotations

import datetime as dt

import asyncpg

from dispatch.config import Config
from dispatch.console.floor import floor_snapshot
from dispatch.notices import Severity, acknowledge_notice, raise_notice
from dispatch.users import Role, create_user
from tests import factories, order_rows
from tests.order_world import make_lane


async def test_overdue_orders_are_those_not_started_after_the_grace(
    config: Config, pool: asyncpg.Pool
) -> None:
    lane = make_lane(config, pool)
    async with pool.acquire() as conn:
        await order_rows.catalogue(conn)
        district, community = await factories.community(conn)
        resident = await factories.resident(conn, community_id=community)
        await order_rows.provider(conn, name="暖心家政", districts=(district,))
    starting_now = await lane.order(resident, start_in=dt.timedelta(minutes=1))
    later = await lane.order(resident, start_in=dt.timedelta(hours=3))
    grace = 900.0
    async with pool.acquire() as conn:
        early = await floor_snapshot(conn, lane.clock.now + dt.timedelta(minutes=5), grace)
        late = await floor_snapshot(conn, lane.clock.now + dt.timedelta(minutes=20), grace)
    assert {o["id"]: o["overdue"] for o in early["orders"]} == {starting_now.id: False, later.id: False}
    assert {o["id"]: o["overdue"] for o in late["orders"]} == {starting_now.id: True, later.id: False}
    assert late["orders"][0]["state"] == "offered"
    assert late["orders"][0]["deadline_at"] is not None  # the offer's expiry


async def test_open_notices_critical_first_then_newest(pool: asyncpg.Pool) -> None:
    start = dt.datetime(2026, 3, 14, 2, 0, tzinfo=dt.UTC)
    async with pool.acquire() as conn, conn.transaction():
        ids = {}
        for minute, (name, severity, data) in enumerate(
            [
                ("old_critical", Severity.CRITICAL, None),
                ("warning", Severity.WARNING, None),
                ("acknowledged", Severity.CRITICAL, None),
                ("escalation", Severity.CRITICAL, {"audience": "supervisor"}),
                ("newest_info", Severity.INFO, None),
            ]
        ):
            event = await raise_notice(
                conn,
                kind="alert.ack_supervisor" if name == "escalation" else "device.silent",
                severity=severity,
                text=f"{name} / {name}",
                subject_type="alert",
                subject_id=7,
                data=data,
                at=start + dt.timedelta(minutes=minute),
            )
            ids[name] = event.subject_id
        user = await create_user(conn, "wangfang", Role.OPERATOR)
        assert await acknowledge_notice(conn, ids["acknowledged"], user.id, actor="user:test")
        snapshot = await floor_snapshot(conn, start + dt.timedelta(hours=1), 900.0)
    notices = snapshot["notices"]
    assert [n["id"] for n in notices] == [
        ids[k] for k in ("escalation", "old_critical", "newest_info", "warning")
    ]
    assert snapshot["notices_open"] == 4
    assert notices[0] == {
        "id": ids["escalation"],
        "kind": "alert.ack_supervisor",
        "severity": "critical",
        "text": "escalation / escalation",
        "subject_type": "alert",
        "subject_id": 7,
        "created_at": (start + dt.timedelta(minutes=3)).isoformat(),
        "audience": "supervisor",
    }
    assert notices[1]["audience"] == "all"
