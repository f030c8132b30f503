"""Device faults open repair orders: from a DC-09 low-battery report through real intake, from the
heartbeat sweep; one open order per device (a second fault joins it); the 2-hour remedy clock;
the reassurance call (no telephony here: an operator is asked to make it).
"""

from __future__ import annotations

import dataclasses

import asyncpg
import pytest

from dispatch.alert_desk import AlertDesk
from dispatch.call_task_steps import CallTaskSteps
from dispatch.call_tasks import TaskReason, tasks_of
from dispatch.config import Config
from dispatch.follow_up import FollowUpHooks
from dispatch.orders import EvidenceSource, OrderSource, OrderState
from dispatch.repairs import ReassuranceHooks, Repairs
from dispatch.visit_desk import VisitStep
from telephony.alarms import dc09
from telephony.alarms.dc09_server import frame_message
from telephony.alarms.heartbeats import sweep_silent_devices
from telephony.alarms.intake import take
from telephony.originate import Originator, register_call_attempts
from tests import factories
from tests.alarm_helpers import sia
from tests.order_rows import HOME, provider
from tests.order_world import Lane, lane_config, make_lane

FIXER_SMS = "+8613500000009"
ACCOUNT = "C0FFEE"


@dataclasses.dataclass
class World:
    lane: Lane
    device: int
    resident: int
    fixer: int


@pytest.fixture
async def world(config: Config, pool: asyncpg.Pool) -> World:
    lane = make_lane(lane_config(config, repair_item_code="unit_fix"), pool)
    register_call_attempts(lane.handlers)
    Repairs(lane.desk).register(lane.handlers)
    steps = CallTaskSteps(lane.runtime, Originator(lane.runtime, {}))
    steps.add(TaskReason.REPAIR_REASSURANCE, ReassuranceHooks())
    steps.add(TaskReason.ORDER_FOLLOW_UP, FollowUpHooks(lane.desk))
    steps.register(lane.handlers)
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO service_categories (code, name_zh, name_en) VALUES ('AR', '家电维修', 'Repair')"
        )
        await conn.execute(
            """INSERT INTO service_items (code, category_code, name_zh, name_en, unit, unit_price_fen,
                                          subsidy_eligible, urgent)
               VALUES ('unit_fix', 'AR', '呼叫器设备维修', 'Alarm unit repair', 'visit', 5000, true, false)"""
        )
        district, community = await factories.community(conn, lat=HOME[0], lon=HOME[1])
        resident = await factories.resident(conn, community_id=community, phone="+8613800138009")
        device = await conn.fetchval(
            """INSERT INTO devices (serial, kind, resident_id, dc09_account, heartbeat_interval_s,
                                   installed_at)
               VALUES ('GW-REPAIR', 'home_unit', $1, $2, 3600, $3) RETURNING id""",
            resident,
            ACCOUNT,
            lane.clock.now,
        )
        fixer = await provider(
            conn, name="安心维修", sms=FIXER_SMS, items=("unit_fix",), districts=(district,)
        )
    return World(lane, int(device), resident, fixer)


async def report(world: World, seq: int, code: str) -> None:
    """A DC-09 frame from the unit, through the receiver's path without its socket."""
    runtime = world.lane.runtime
    now = runtime.clock()
    decoded = dc09.decode_frame(sia(ACCOUNT, seq, code, "000"), key_for=lambda _: None, now=now)
    await take(runtime, AlertDesk(runtime), frame_message(decoded, now, 3600.0))


async def repair_orders(world: World) -> list[asyncpg.Record]:
    return await world.lane.pool.fetch(
        "SELECT id, source, device_id, item_code, state FROM service_orders WHERE device_id = $1 ORDER BY id",
        world.device,
    )


async def test_low_battery_opens_one_repair_order_that_a_second_fault_joins(world: World) -> None:
    lane = world.lane
    await report(world, 1, "YT")
    await lane.fire()
    [order] = await repair_orders(world)
    assert (order["source"], order["item_code"], order["state"]) == ("device", "unit_fix", "offered")
    assert [o["provider_id"] for o in await lane.offers(order["id"])] == [world.fixer]
    async with lane.pool.acquire() as conn:
        [task] = await tasks_of(conn, "order", order["id"])
    assert (task.reason, task.purpose.value) == (TaskReason.REPAIR_REASSURANCE, "care_call")

    lane.clock.advance(minutes=5)
    await report(world, 2, "AT")  # mains lost too: the same unit, the same repair
    await lane.fire()
    assert len(await repair_orders(world)) == 1
    assert "order.repair_joined" in await lane.kinds(order["id"])
    # the reassurance call could not be placed (no telephony): an operator makes it
    assert await lane.notices(order["id"]) == ["repair_reassurance.manual"]

    await lane.fire(hours=2)  # nobody has fixed it in 2 h: the supervisors hear of it
    # (its offer expired unanswered long before: unfilled, and the visit is late, too)
    assert await lane.notices(order["id"]) == [
        "repair_reassurance.manual",
        "order.unfilled",
        "order.late_visit",
        "order.remedy_overdue",
    ]
    severity = await lane.pool.fetchval("SELECT severity FROM notices WHERE kind = 'order.remedy_overdue'")
    assert severity == "critical"


async def test_a_repair_done_in_time_raises_no_overdue_notice_and_the_next_fault_opens_a_new_one(
    world: World,
) -> None:
    lane = world.lane
    await report(world, 1, "YT")
    await lane.fire()
    [order] = await repair_orders(world)
    await lane.reply(FIXER_SMS, f"1 {await lane.code(order['id'], world.fixer)}")
    await lane.desk.record_visit(order["id"], VisitStep.CHECK_IN, "user:op", source=EvidenceSource.API)
    lane.clock.advance(minutes=40)
    await lane.desk.record_visit(order["id"], VisitStep.CHECK_OUT, "user:op", source=EvidenceSource.API)
    await lane.fire(hours=2)
    assert "order.remedy_overdue" not in await lane.notices(order["id"])
    await report(world, 2, "YT")
    await lane.fire()
    orders = await repair_orders(world)
    assert [o["state"] for o in orders] == [OrderState.COMPLETED.value, OrderState.OFFERED.value]


async def test_a_silent_device_opens_a_repair_order(world: World) -> None:
    lane = world.lane
    lane.clock.advance(hours=2, minutes=1)  # two heartbeat intervals of an hour
    async with lane.pool.acquire() as conn, conn.transaction():
        events = await sweep_silent_devices(conn, lane.clock.now)
    assert [e.kind for e in events] == ["notice.raised"]
    await lane.fire()
    [order] = await repair_orders(world)
    assert order["source"] == OrderSource.DEVICE.value
    created = await lane.pool.fetchval(
        "SELECT notes FROM service_orders WHERE id = $1",
        order["id"],
    )
    assert "心跳中断" in created
