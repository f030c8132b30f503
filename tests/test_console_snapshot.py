"""The floor's snapshot: open alerts with their next escalation step, orders marked overdue."""

from __future__ import annotations

import datetime as dt

import asyncpg

from dispatch.config import Config
from dispatch.console.floor import floor_snapshot
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
