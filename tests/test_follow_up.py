"""The follow-up call (回访) after check-out: placed through the AMI peer, the IVR's digit read back,
the order confirmed with it; retried when nobody rates, then an operator asked; an operator at
once when there is no telephony; acted on after a restart from the committed attempt row.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from pathlib import Path

import asyncpg
import pytest
from openpyxl import load_workbook

from dispatch.call_task_steps import BusWatch, CallTaskSteps
from dispatch.call_tasks import CHECK, TaskReason, tasks_of
from dispatch.config import Config
from dispatch.events import DomainEvent
from dispatch.follow_up import FollowUpHooks
from dispatch.orders import EvidenceSource, Order, OrderState
from dispatch.settlement import run_settlement
from dispatch.visit_desk import VisitStep
from telephony.originate import Originator, register_call_attempts
from telephony.simulator import AmiPeer, Script, replay, silent_originate
from tests import factories
from tests.ami_peer import SECRET, USERNAME, ManualTime, asterisk_config, drained, recording, serving, up
from tests.order_rows import HOME, T0, catalogue, provider
from tests.order_world import Lane, make_lane

PHONE = "+8613800138001"
DAUGHTER = "+8613911110001"
PROVIDER_SMS = "+8613500000001"


@dataclasses.dataclass
class World:
    lane: Lane
    resident: int
    provider: int


async def build(config: Config, pool: asyncpg.Pool) -> World:
    lane = make_lane(config, pool)
    register_call_attempts(lane.handlers)
    async with pool.acquire() as conn:
        await catalogue(conn)
        district, community = await factories.community(conn, lat=HOME[0], lon=HOME[1])
        resident = await factories.resident(
            conn, community_id=community, phone=PHONE, lat=HOME[0], lon=HOME[1], contacts=[("李娜", DAUGHTER)]
        )
        near = await provider(conn, name="近邻家政", sms=PROVIDER_SMS, districts=(district,))
    return World(lane, resident, near)


@pytest.fixture
async def world(config: Config, pool: asyncpg.Pool) -> World:
    return await build(config, pool)


def steps_for(lane: Lane, originator: Originator) -> CallTaskSteps:
    """The call-task steps as the service wires them (a fresh object is what a restart builds)."""
    steps = CallTaskSteps(lane.runtime, originator)
    steps.add(TaskReason.ORDER_FOLLOW_UP, FollowUpHooks(lane.desk))
    return steps


async def visited(world: World) -> Order:
    """An order accepted by SMS, checked in and out: completed, its follow-up scheduled."""
    lane = world.lane
    order = await lane.order(world.resident)
    await lane.reply(PROVIDER_SMS, f"1 {await lane.code(order.id, world.provider)}")
    lane.clock.now = order.window_start + dt.timedelta(minutes=5)
    await lane.desk.record_visit(order.id, VisitStep.CHECK_IN, "user:op", source=EvidenceSource.API)
    lane.clock.advance(minutes=60)
    return await lane.desk.record_visit(order.id, VisitStep.CHECK_OUT, "user:op", source=EvidenceSource.API)


def rated(digit: str) -> Script:
    """Recording 08 (a care call answered, the IVR reports digit 1) with another digit pressed."""
    base = recording("08-care-call-ivr-dtmf-userevent")
    frames = [
        f.replace(b"Digit: 1", f"Digit: {digit}".encode()) if b"CareCallResult" in f else f
        for f in base.frames
    ]
    return replay(base, frames=frames)


async def test_rating_digit_confirms_the_order_and_it_is_settled(
    world: World, peer: AmiPeer, tmp_path: Path
) -> None:
    lane = world.lane
    order = await visited(world)
    assert order.state is OrderState.COMPLETED
    async with lane.pool.acquire() as conn:
        [task] = await tasks_of(conn, "order", order.id)
    # 13:05 local + 2 h: no quiet hours in the way
    assert task.due_at == lane.clock.now + dt.timedelta(hours=2)
    assert (task.state.value, task.purpose.value, task.max_tries) == ("scheduled", "rating", 3)

    peer.play(rated("4"))
    async with serving(lane.runtime, asterisk_config(peer.port), ManualTime()) as server:
        await up(server)
        steps = steps_for(lane, Originator(lane.runtime, {"pbx1": server}))
        steps.register(lane.handlers)
        digit_seen = asyncio.Event()

        async def listen(event: DomainEvent) -> None:
            # the steps' own listener, then a signal for the test that it has run on the digit
            await steps.on_attempt_event(event)
            if event.kind == "call_attempt.digit":
                digit_seen.set()

        watch = BusWatch(lane.runtime, [("call-tasks", listen, "call_attempt.")])
        await watch.start()
        try:
            assert (await lane.fire(hours=1, minutes=59)).fired == 0
            await lane.fire(minutes=1)
            await drained(peer, server)
            async with asyncio.timeout(10):
                await digit_seen.wait()
            due = await lane.pool.fetchval("SELECT due_at FROM deadlines WHERE kind = $1", CHECK)
            assert due == lane.clock.now  # brought forward from ring time + grace
            await lane.fire()
        finally:
            await watch.stop()
    sent = next(a for a in peer.received if a["Action"] == "Originate")
    assert (sent["Context"], sent["Channel"]) == ("rating-ivr", "Local/13800138001@outbound")
    done = await lane.get(order.id)
    assert (done.state, done.rating) == (OrderState.CONFIRMED, 4)
    confirmed_by = await lane.pool.fetchval(
        "SELECT actor FROM events WHERE subject_type = 'order' AND subject_id = $1 AND kind = $2",
        order.id,
        "order.confirmed",
    )
    assert confirmed_by == "system:follow-up"
    assert [m["purpose"] for m in await lane.sms_to(DAUGHTER)] == ["proof_of_service"]
    async with lane.pool.acquire() as conn:
        [task] = await tasks_of(conn, "order", order.id)
    assert (task.state.value, task.outcome, task.digit, task.tries) == ("done", "rated 4", "4", 1)

    # The end of the lane: the month's settlement workbook carries the order and its evidence.
    out = tmp_path / "settlement.xlsx"
    report = await run_settlement(lane.runtime, done.subsidy_month, out, settle=True)
    assert report.settled_now == [order.id]
    sheet = load_workbook(out, read_only=True)["服务凭证 Evidence"]
    header, *rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    [row] = [dict(zip(header, r, strict=True)) for r in rows if r[0] == order.id]
    assert row["状态 State"] == OrderState.SETTLED.value
    assert row["服务商 Provider"] == "近邻家政"
    assert (row["签到方式 Check-in source"], row["签退方式 Check-out source"]) == ("api", "api")
    assert row["评分 Rating"] == 4
    assert row["服务时长(小时) Hours"] == 1.0


async def test_a_restart_between_the_digit_and_the_confirmation_still_confirms(
    world: World, peer: AmiPeer
) -> None:
    """Nobody listens on the bus (the process died after the recorder committed the digit): the
    check deadline fires on its own time, in a new process, and reads the digit from the row."""
    lane = world.lane
    order = await visited(world)
    peer.play(rated("1"))
    async with serving(lane.runtime, asterisk_config(peer.port), ManualTime()) as server:
        await up(server)
        steps_for(lane, Originator(lane.runtime, {"pbx1": server})).register(lane.handlers)
        await lane.fire(hours=2)
        await drained(peer, server)
    assert await lane.state(order.id) == OrderState.COMPLETED.value
    restarted = make_lane(lane.runtime.config, lane.pool, lane.clock.now)
    register_call_attempts(restarted.handlers)
    steps_for(restarted, Originator(restarted.runtime, {})).register(restarted.handlers)
    # ring time 30 s + Asterisk's grace 30 s + the IVR's grace 120 s
    await restarted.fire(seconds=181)
    done = await restarted.get(order.id)
    assert (done.state, done.rating) == (OrderState.COMPLAINT, 1)
    assert await restarted.notices(order.id) == ["order.complaint"]


async def test_unrated_calls_are_tried_again_then_an_operator_is_asked(world: World) -> None:
    """Asterisk never answers: each try is failed by its timeout, tried again 30 min later (an
    invalid digit counts the same), and after three an operator gets a notice."""
    lane = world.lane
    order = await visited(world)
    peer = AmiPeer(username=USERNAME, secret=SECRET, originate=silent_originate)
    await peer.start()
    try:
        async with serving(lane.runtime, asterisk_config(peer.port), ManualTime()) as server:
            await up(server)
            steps_for(lane, Originator(lane.runtime, {"pbx1": server})).register(lane.handlers)
            await lane.fire(hours=2)
            for _ in range(2):
                await lane.fire(seconds=181)
                assert await lane.notices(order.id) == []
                await lane.fire(minutes=30)
            await lane.fire(seconds=181)
            await drained(peer, server)
    finally:
        await peer.stop()
    assert sum(1 for a in peer.received if a["Action"] == "Originate") == 3
    assert await lane.notices(order.id) == ["order_follow_up.manual"]
    async with lane.pool.acquire() as conn:
        [task] = await tasks_of(conn, "order", order.id)
    assert (task.state.value, task.tries) == ("operator", 3)
    assert task.outcome == "3 tries: failed"
    assert await lane.state(order.id) == OrderState.COMPLETED.value


async def test_an_invalid_digit_is_asked_again(world: World, peer: AmiPeer) -> None:
    lane = world.lane
    order = await visited(world)
    peer.play(rated("7"))
    async with serving(lane.runtime, asterisk_config(peer.port), ManualTime()) as server:
        await up(server)
        steps_for(lane, Originator(lane.runtime, {"pbx1": server})).register(lane.handlers)
        await lane.fire(hours=2)
        await drained(peer, server)
        await lane.fire(seconds=181)
    async with lane.pool.acquire() as conn:
        [task] = await tasks_of(conn, "order", order.id)
    assert (task.state.value, task.tries) == ("scheduled", 1)
    assert task.due_at == lane.clock.now + dt.timedelta(minutes=30)
    unanswered = await lane.pool.fetchval(
        "SELECT data->>'why' FROM events WHERE subject_type = 'call_task' AND kind = 'call_task.unanswered'"
    )
    assert unanswered == "no valid digit"


async def test_without_telephony_an_operator_is_asked_at_once(world: World) -> None:
    lane = world.lane
    order = await visited(world)
    steps_for(lane, Originator(lane.runtime, {})).register(lane.handlers)
    await lane.fire(hours=2)
    assert await lane.notices(order.id) == ["order_follow_up.manual"]
    text = await lane.pool.fetchval("SELECT text FROM notices WHERE kind = 'order_follow_up.manual'")
    assert "telephony unavailable" in text
    attempts = await lane.pool.fetch("SELECT purpose, result FROM call_attempts")
    assert [(a["purpose"], a["result"]) for a in attempts] == [("rating", "failed")]


async def test_a_link_that_is_down_is_tried_again_before_an_operator_is_asked(world: World) -> None:
    """A configured PBX that is not reachable (its link down after a restart): the try is on
    record as failed and the call is tried again in 30 min; only the last try asks an operator."""
    lane = world.lane
    order = await visited(world)
    peer = AmiPeer(username=USERNAME, secret=SECRET)
    await peer.start()
    port = peer.port
    await peer.stop()  # nothing listens there now: the link never comes up
    async with serving(lane.runtime, asterisk_config(port), ManualTime()) as server:
        steps_for(lane, Originator(lane.runtime, {"pbx1": server})).register(lane.handlers)
        await lane.fire(hours=2)
        assert await lane.notices(order.id) == []
        async with lane.pool.acquire() as conn:
            [task] = await tasks_of(conn, "order", order.id)
        assert (task.state.value, task.tries) == ("scheduled", 1)
        assert task.due_at == lane.clock.now + dt.timedelta(minutes=30)
        for _ in range(2):
            await lane.fire(minutes=30)
    assert await lane.notices(order.id) == ["order_follow_up.manual"]
    whys = await lane.pool.fetch(
        "SELECT data->>'why' AS why FROM events WHERE kind = 'call_task.unanswered' ORDER BY id"
    )
    assert [w["why"] for w in whys] == ["link down", "link down"]
    attempts = await lane.pool.fetch("SELECT result FROM call_attempts ORDER BY id")
    assert [a["result"] for a in attempts] == ["failed"] * 3


async def test_follow_up_waits_out_the_quiet_hours(world: World) -> None:
    """A check-out at 20:00 local: two hours later is 22:00, so the call waits for 08:00."""
    lane = world.lane
    order = await lane.order(world.resident, start_in=dt.timedelta(hours=9))
    await lane.reply(PROVIDER_SMS, f"1 {await lane.code(order.id, world.provider)}")
    lane.clock.now = order.window_start
    await lane.desk.record_visit(order.id, VisitStep.CHECK_IN, "user:op", source=EvidenceSource.API)
    lane.clock.now = T0 + dt.timedelta(hours=11)  # 20:00 in Hohhot
    await lane.desk.record_visit(order.id, VisitStep.CHECK_OUT, "user:op", source=EvidenceSource.API)
    async with lane.pool.acquire() as conn:
        [task] = await tasks_of(conn, "order", order.id)
    assert task.due_at == T0 + dt.timedelta(hours=23)  # 08:00 the next morning


async def test_an_operator_confirming_first_cancels_the_call(world: World) -> None:
    lane = world.lane
    order = await visited(world)
    await lane.desk.confirm(order.id, "user:op", rating=5)
    steps_for(lane, Originator(lane.runtime, {})).register(lane.handlers)
    await lane.fire(hours=3)
    async with lane.pool.acquire() as conn:
        [task] = await tasks_of(conn, "order", order.id)
    assert (task.state.value, task.outcome) == ("cancelled", "confirmed")
    assert await lane.pool.fetchval("SELECT count(*) FROM call_attempts") == 0
