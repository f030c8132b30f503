"""The service lane end to end, with time moved on purpose: offers, answers by SMS, the ladder,
urgent fan-outs, the visit, the follow-up.

Real PostgreSQL, the real SMS outbox rows and the real inbound reply path (`route_reply`, as
the Twilio webhook and the console outbox use it); the clock is injected so every deadline is
checked at its due time without sleeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import asyncpg
import pytest

from dispatch.config import Config
from dispatch.deadlines import pending_deadlines
from dispatch.order_desk import NoCandidate
from dispatch.orders import (
    EvidenceSource,
    IllegalTransition,
    InvalidOrder,
    OrderSource,
    OrderState,
    visit_evidence,
)
from dispatch.visit_desk import VisitStep
from providers.inbound import RouteOutcome
from tests import factories
from tests.order_rows import HOME, T0, catalogue, provider
from tests.order_world import Lane, lane_config, make_lane

DAUGHTER = "+8613911110001"
NEAR_SMS = "+8613500000001"
MID_SMS = "+8613500000002"
FAR_SMS = "+8613500000003"
CLOSE_REASONS = {"accepted", "declined", "expired", "cancelled", "taken_by_other"}


@dataclasses.dataclass
class World:
    lane: Lane
    district: int
    community: int
    resident: int
    near: int
    mid: int
    far: int


async def build(config: Config, pool: asyncpg.Pool) -> World:
    lane = make_lane(config, pool)
    async with pool.acquire() as conn:
        await catalogue(conn)
        district, community = await factories.community(conn, lat=HOME[0], lon=HOME[1])
        resident = await factories.resident(
            conn, community_id=community, lat=HOME[0], lon=HOME[1], contacts=[("李娜", DAUGHTER)]
        )
        near = await provider(
            conn, name="近邻家政", sms=NEAR_SMS, lat=40.851, lon=111.701, districts=(district,)
        )
        mid = await provider(conn, name="中和护理", sms=MID_SMS, lat=40.87, lon=111.72, districts=(district,))
        far = await provider(
            conn, name="远航服务", sms=FAR_SMS, lat=40.95, lon=111.80, communities=(community,)
        )
    return World(lane, district, community, resident, near, mid, far)


@pytest.fixture
async def world(config: Config, pool: asyncpg.Pool) -> World:
    return await build(config, pool)


async def test_offer_accept_visit_and_follow_up_by_sms(world: World) -> None:
    lane = world.lane
    order = await lane.order(world.resident, notes="老人行动不便，请带助浴椅")
    assert order.state is OrderState.OFFERED
    code = await lane.code(order.id, world.near)
    offer_sms = await lane.sms_to(NEAR_SMS)
    assert [m["purpose"] for m in offer_sms] == ["offer"]
    body = offer_sms[0]["body"]
    assert code in body
    assert "/j/" in body
    assert "助浴服务" in body
    assert "王**" in body  # the name is masked in an offer
    assert await lane.sms_to(MID_SMS) == []  # one provider at a time

    lane.clock.advance(minutes=2)
    accepted = await lane.reply(NEAR_SMS, f"1 {code}")
    assert accepted.outcome is RouteOutcome.ACTED
    after = await lane.get(order.id)
    assert (after.state, after.provider_id, after.accepted_at) == (
        OrderState.ACCEPTED,
        world.near,
        lane.clock.now,
    )
    assert [(o["outcome"], o["open"]) for o in await lane.offers(order.id)] == [("accepted", True)]

    lane.clock.now = order.window_start + dt.timedelta(minutes=5)
    await lane.reply(NEAR_SMS, "到")  # the provider's only open job: the code may be left out
    assert await lane.state(order.id) == OrderState.IN_SERVICE
    lane.clock.advance(minutes=75)
    await lane.reply(NEAR_SMS, f"９ {code}")
    done = await lane.get(order.id)
    assert done.state is OrderState.COMPLETED
    assert (done.checked_in_source, done.checked_out_source) == (EvidenceSource.SMS, EvidenceSource.SMS)
    assert done.service_seconds == 75 * 60
    assert [(o["open"], o["close_reason"]) for o in await lane.offers(order.id)] == [(False, "accepted")]
    async with lane.pool.acquire() as conn:
        evidence = await visit_evidence(conn, order.id)
        assert await pending_deadlines(conn, "order", order.id) == []
    assert [(e.kind, e.source) for e in evidence] == [("check_in", "sms"), ("check_out", "sms")]

    confirmed = await lane.desk.confirm(order.id, "user:op", rating=5, note_text="老人很满意")
    assert (confirmed.state, confirmed.rating, confirmed.follow_up_note) == (
        OrderState.CONFIRMED,
        5,
        "老人很满意",
    )
    proof = await lane.sms_to(DAUGHTER)
    assert [m["purpose"] for m in proof] == ["proof_of_service"]
    assert "近邻家政" in proof[0]["body"]
    assert "评价5分" in proof[0]["body"]
    assert await lane.pool.fetchval("SELECT rating FROM providers WHERE id = $1", world.near) == 5
    assert await lane.kinds(order.id) == [
        "order.created",
        "order.offered",
        "order.accepted",
        "order.in_service",
        "order.completed",
        "order.confirmed",
    ]


async def test_decline_goes_to_the_next_candidate_at_once(world: World) -> None:
    lane = world.lane
    order = await lane.order(world.resident)
    code = await lane.code(order.id, world.near)
    answer = await lane.reply(NEAR_SMS, f"拒 {code}")
    assert answer.outcome is RouteOutcome.ACTED
    offers = await lane.offers(order.id)
    assert [(o["provider_id"], o["outcome"], o["close_reason"]) for o in offers] == [
        (world.near, "declined", "declined"),
        (world.mid, None, None),
    ]
    assert await lane.state(order.id) == OrderState.OFFERED
    assert "order.offer_declined" in await lane.kinds(order.id)
    # the one who declined is not asked again, even when the next one declines too
    await lane.reply(MID_SMS, f"2 {await lane.code(order.id, world.mid)}")
    assert [o["provider_id"] for o in await lane.offers(order.id)] == [world.near, world.mid, world.far]


async def test_unanswered_offers_climb_the_ladder_to_unfilled(world: World) -> None:
    lane = world.lane
    order = await lane.order(world.resident)
    assert (await lane.fire(seconds=599)).fired == 0
    await lane.fire(seconds=1)
    assert [o["provider_id"] for o in await lane.offers(order.id)] == [world.near, world.mid]
    await lane.fire(seconds=600)
    await lane.fire(seconds=600)
    after = await lane.get(order.id)
    assert after.state is OrderState.UNFILLED
    offers = await lane.offers(order.id)
    assert [(o["outcome"], o["close_reason"]) for o in offers] == [("expired", "expired")] * 3
    assert await lane.notices(order.id) == ["order.unfilled"]
    for phone in (NEAR_SMS, MID_SMS, FAR_SMS):
        assert [m["purpose"] for m in await lane.sms_to(phone)] == ["offer", "cancellation"]
    # a late answer changes nothing
    late = await lane.reply(NEAR_SMS, f"1 {await lane.code(order.id, world.near)}")
    assert late.outcome is RouteOutcome.NO_JOB
    assert await lane.state(order.id) == OrderState.UNFILLED
    kinds = await lane.kinds(order.id)
    assert kinds.count("order.offer_expired") == 3
    assert kinds[-1] == "order.unfilled"

    # back with an operator: nobody is left to rank, a chosen provider may still be asked
    with pytest.raises(NoCandidate):
        await lane.desk.offer(order.id, "user:op")
    offered = await lane.desk.offer(order.id, "user:op", provider_id=world.mid, reason="电话确认可以去")
    assert offered.order.state is OrderState.OFFERED
    assert [o.chosen.value for o in offered.offers] == ["operator"]


async def test_answer_at_the_deadline_counts_as_expired(world: World) -> None:
    lane = world.lane
    order = await lane.order(world.resident)
    code = await lane.code(order.id, world.near)
    lane.clock.advance(seconds=600)  # due, not yet fired
    answer = await lane.reply(NEAR_SMS, f"1 {code}")
    assert answer.outcome is RouteOutcome.ACTED
    assert [o["outcome"] for o in await lane.offers(order.id)] == ["expired", None]
    # its own deadline went with it: only the next offer's is pending
    assert (await lane.fire(seconds=0)).fired == 0
    assert [o["outcome"] for o in await lane.offers(order.id)] == ["expired", None]
    assert (await lane.fire(seconds=600)).fired == 1


async def test_urgent_fanout_racing_accepts_have_one_winner(config: Config, pool: asyncpg.Pool) -> None:
    world = await build(config, pool)
    lane = world.lane
    phones = {world.near: NEAR_SMS, world.mid: MID_SMS, world.far: FAR_SMS}
    for round_ in range(4):
        order = await lane.order(world.resident, "lock", start_in=dt.timedelta(hours=3 * round_ + 1))
        offers = await lane.offers(order.id)
        assert sorted(o["provider_id"] for o in offers) == sorted(phones)
        assert {o["chosen"] for o in offers} == {"fanout"}
        codes = {p: await lane.code(order.id, p) for p in phones}
        results = await asyncio.gather(*(lane.reply(phones[p], f"1 {codes[p]}") for p in phones))
        after = await lane.get(order.id)
        assert after.state is OrderState.ACCEPTED
        winner = after.provider_id
        assert winner in phones
        offers = await lane.offers(order.id)
        outcomes = {o["provider_id"]: (o["outcome"], o["open"], o["close_reason"]) for o in offers}
        assert outcomes.pop(winner) == ("accepted", True, None)
        assert set(outcomes.values()) == {("taken_by_other", False, "taken_by_other")}
        assert all(r.outcome in (RouteOutcome.ACTED, RouteOutcome.NO_JOB) for r in results)
        # every loser was stood down in the same words: by a cancellation SMS when its job could be
        # closed at once, else in the answer to its own reply
        for loser in outcomes:
            texts = [m["body"] for m in await lane.sms_to(phones[loser]) if codes[loser] in m["body"]]
            assert any("已被其他服务商接单" in t and "无需上门" in t for t in texts[1:])
        assert await lane.pool.fetchval("SELECT count(*) FROM notices WHERE kind LIKE 'sms.%'") == 0
        # the winner finishes the visit so the next round starts from the same capacity
        lane.clock.now = after.window_start
        await lane.reply(phones[winner], f"3 {codes[winner]}")
        await lane.reply(phones[winner], f"9 {codes[winner]}")
        lane.clock.now = T0


async def test_urgent_fanout_all_declining_asks_the_next_batch(config: Config, pool: asyncpg.Pool) -> None:
    world = await build(lane_config(config, urgent_fanout=2), pool)
    lane = world.lane
    order = await lane.order(world.resident, "lock")
    first = [o["provider_id"] for o in await lane.offers(order.id)]
    assert first == [world.near, world.mid]
    await lane.reply(NEAR_SMS, f"2 {await lane.code(order.id, world.near)}")
    assert len(await lane.offers(order.id)) == 2  # MID still has it
    await lane.reply(MID_SMS, f"2 {await lane.code(order.id, world.mid)}")
    assert [o["provider_id"] for o in await lane.offers(order.id)] == [world.near, world.mid, world.far]


async def test_cancel_after_acceptance_stands_the_provider_down(world: World) -> None:
    lane = world.lane
    order = await lane.order(world.resident)
    code = await lane.code(order.id, world.near)
    await lane.reply(NEAR_SMS, f"1 {code}")
    with pytest.raises(InvalidOrder, match="reason"):
        await lane.desk.cancel(order.id, "user:op", reason=" ")
    cancelled = await lane.desk.cancel(order.id, "user:op", reason="老人住院了")
    assert (cancelled.state, cancelled.close_reason) == (OrderState.CANCELLED, "老人住院了")
    assert [m["purpose"] for m in await lane.sms_to(NEAR_SMS)] == ["offer", "reply_ack", "cancellation"]
    # the provider did accept: that stays its answer on the job
    assert [(o["outcome"], o["close_reason"]) for o in await lane.offers(order.id)] == [
        ("accepted", "accepted")
    ]
    async with lane.pool.acquire() as conn:
        assert await pending_deadlines(conn, "order", order.id) == []
    late = await lane.reply(NEAR_SMS, f"3 {code}")
    assert late.outcome is RouteOutcome.NO_JOB


async def test_cancel_while_offered_closes_the_offer_as_cancelled(world: World) -> None:
    lane = world.lane
    order = await lane.order(world.resident)
    await lane.desk.cancel(order.id, "user:op", reason="家属已自行安排")
    assert [(o["outcome"], o["close_reason"]) for o in await lane.offers(order.id)] == [
        ("cancelled", "cancelled")
    ]
    assert [m["purpose"] for m in await lane.sms_to(NEAR_SMS)] == ["offer", "cancellation"]
    assert (await lane.fire(hours=6)).fired == 0


async def test_re_offer_takes_the_order_back_from_its_provider(world: World) -> None:
    lane = world.lane
    order = await lane.order(world.resident)
    code = await lane.code(order.id, world.near)
    await lane.reply(NEAR_SMS, f"1 {code}")
    offered = await lane.desk.re_offer(order.id, "user:op", reason="服务商来电说车坏了")
    assert offered.order.state is OrderState.OFFERED
    assert offered.order.provider_id is None
    assert [o.provider_id for o in offered.offers] == [world.mid]
    rows = await lane.offers(order.id)
    assert rows[0]["withdrawn_at"] == lane.clock.now
    assert (rows[0]["outcome"], rows[0]["close_reason"]) == ("accepted", "accepted")
    assert world.near not in [c.provider_id for c in offered.candidates]
    assert [m["purpose"] for m in await lane.sms_to(NEAR_SMS)][-1] == "cancellation"
    # its old code answers nothing now
    assert (await lane.reply(NEAR_SMS, f"3 {code}")).outcome is RouteOutcome.NO_JOB


async def test_late_visit_raises_a_notice_unless_checked_in(world: World) -> None:
    lane = world.lane
    late = await lane.order(world.resident, start_in=dt.timedelta(hours=1))
    on_time = await lane.order(world.resident, "clean", start_in=dt.timedelta(hours=1))
    await lane.reply(NEAR_SMS, f"1 {await lane.code(late.id, world.near)}")
    await lane.reply(NEAR_SMS, f"1 {await lane.code(on_time.id, world.near)}")
    lane.clock.now = on_time.window_start + dt.timedelta(minutes=3)
    await lane.desk.record_visit(on_time.id, VisitStep.CHECK_IN, "user:op", source=EvidenceSource.CALL)
    lane.clock.now = late.window_start + dt.timedelta(seconds=899)
    await lane.fire(seconds=0)
    assert await lane.notices(late.id) == []
    await lane.fire(seconds=1)
    assert await lane.notices(late.id) == ["order.late_visit"]
    assert await lane.notices(on_time.id) == []
    assert "order.late_visit" in await lane.kinds(late.id)


async def test_provider_is_reminded_before_the_window(world: World) -> None:
    lane = world.lane
    order = await lane.order(world.resident, start_in=dt.timedelta(hours=5))
    code = await lane.code(order.id, world.near)
    await lane.reply(NEAR_SMS, f"1 {code}")
    await lane.fire(hours=3, minutes=59)
    assert "reminder" not in [m["purpose"] for m in await lane.sms_to(NEAR_SMS)]
    await lane.fire(minutes=1)
    reminders = [m for m in await lane.sms_to(NEAR_SMS) if m["purpose"] == "reminder"]
    assert len(reminders) == 1
    assert f"3 {code}" in reminders[0]["body"]


async def test_low_rating_opens_a_complaint(world: World) -> None:
    lane = world.lane
    order = await lane.order(world.resident)
    code = await lane.code(order.id, world.near)
    await lane.reply(NEAR_SMS, f"1 {code}")
    await lane.reply(NEAR_SMS, f"3 {code}")
    await lane.reply(NEAR_SMS, f"9 {code}")
    with pytest.raises(InvalidOrder, match="rating"):
        await lane.desk.confirm(order.id, "user:op", rating=6)
    complained = await lane.desk.confirm(order.id, "user:op", rating=2, note_text="迟到一小时")
    assert (complained.state, complained.rating) == (OrderState.COMPLAINT, 2)
    assert await lane.notices(order.id) == ["order.complaint"]
    rated = await lane.desk.rate(order.id, "user:family", rating=3)
    assert (rated.state, rated.rating, rated.follow_up_note) == (OrderState.COMPLAINT, 3, "迟到一小时")


async def test_rating_a_confirmed_order_low_is_a_complaint(world: World) -> None:
    lane = world.lane
    order = await lane.order(world.resident)
    code = await lane.code(order.id, world.near)
    for reply in ("1", "3", "9"):
        await lane.reply(NEAR_SMS, f"{reply} {code}")
    await lane.desk.confirm(order.id, "user:op", rating=4)
    rated = await lane.desk.rate(order.id, "user:op", rating=1, note_text="家属反映服务敷衍")
    assert rated.state is OrderState.COMPLAINT
    with pytest.raises(IllegalTransition) as err:
        await lane.desk.confirm(order.id, "user:op", rating=5)
    assert err.value.current is OrderState.COMPLAINT


async def test_replies_that_do_not_apply_are_answered_and_change_nothing(world: World) -> None:
    lane = world.lane
    order = await lane.order(world.resident)
    code = await lane.code(order.id, world.near)
    early = await lane.reply(NEAR_SMS, f"3 {code}")  # arrived before accepting
    assert early.outcome is RouteOutcome.ACTED
    assert "1 " + code in (await lane.sms_to(NEAR_SMS))[-1]["body"]
    await lane.reply(NEAR_SMS, f"1 {code}")
    await lane.reply(NEAR_SMS, f"9 {code}")  # done before arriving
    assert "服务中" not in (await lane.sms_to(NEAR_SMS))[-1]["body"]
    assert await lane.state(order.id) == OrderState.ACCEPTED
    await lane.reply(NEAR_SMS, f"2 {code}")  # declining what it accepted: call the centre instead
    assert "12349" in (await lane.sms_to(NEAR_SMS))[-1]["body"]
    assert await lane.state(order.id) == OrderState.ACCEPTED


async def test_a_job_held_by_a_reply_in_flight_is_closed_by_that_reply(world: World) -> None:
    lane = world.lane
    order = await lane.order(world.resident)
    code = await lane.code(order.id, world.near)
    await lane.reply(NEAR_SMS, f"1 {code}")
    await lane.reply(NEAR_SMS, f"3 {code}")
    job_id = await lane.pool.fetchval("SELECT job_id FROM order_offers WHERE order_id = $1", order.id)
    async with lane.pool.acquire() as holder, holder.transaction():
        # as the router holds a job while its reply waits for the order
        await holder.execute("SELECT 1 FROM sms_jobs WHERE id = $1 FOR UPDATE", job_id)
        done = await lane.desk.record_visit(
            order.id, VisitStep.CHECK_OUT, "user:op", source=EvidenceSource.CALL
        )
        assert done.state is OrderState.COMPLETED
    assert [(o["open"], o["close_reason"]) for o in await lane.offers(order.id)] == [(True, None)]
    late = await lane.reply(NEAR_SMS, f"9 {code}")
    assert late.outcome is RouteOutcome.ACTED
    assert "无需操作" in (await lane.sms_to(NEAR_SMS))[-1]["body"]
    assert [(o["open"], o["close_reason"]) for o in await lane.offers(order.id)] == [(False, "accepted")]


async def test_service_button_orders_its_preset_item(world: World) -> None:
    lane = world.lane
    async with lane.pool.acquire() as conn:
        device = await factories.device(conn, resident_id=world.resident)
        await conn.execute("UPDATE devices SET service_item_code = 'clean' WHERE id = $1", device)
    offered = await lane.desk.create_order(
        resident_id=None,
        item_code=None,
        window_start=None,
        window_end=None,
        source=OrderSource.BUTTON,
        actor="device:test",
        device_id=device,
    )
    order = offered.order
    assert (order.resident_id, order.item_code, order.device_id) == (world.resident, "clean", device)
    assert (order.window_start, order.window_end) == (T0, T0 + dt.timedelta(hours=2))
    assert order.state is OrderState.OFFERED


async def test_close_reasons_stay_in_the_shared_vocabulary(world: World) -> None:
    lane = world.lane
    taken = await lane.order(world.resident, "lock")
    await lane.reply(NEAR_SMS, f"1 {await lane.code(taken.id, world.near)}")
    declined = await lane.order(world.resident, start_in=dt.timedelta(hours=8))
    phones = {world.near: NEAR_SMS, world.mid: MID_SMS, world.far: FAR_SMS}
    asked = (await lane.offers(declined.id))[0]["provider_id"]
    await lane.reply(phones[asked], f"2 {await lane.code(declined.id, asked)}")
    await lane.fire(minutes=10)
    await lane.desk.cancel(declined.id, "user:op", reason="test")
    reasons = await lane.pool.fetch(
        "SELECT DISTINCT close_reason FROM sms_jobs WHERE kind = 'order_offer' AND NOT open"
    )
    assert {r["close_reason"] for r in reasons} <= CLOSE_REASONS
    assert len(reasons) >= 4
