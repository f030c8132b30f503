"""The order state machine: every legal step, every illegal one refused with nothing changed,
an event row for each move, and a race with exactly one winner."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from dispatch.database import Conn
from dispatch.events import timeline
from dispatch.orders import (
    TRANSITIONS,
    EvidenceSource,
    IllegalTransition,
    NewOrder,
    OrderNotFound,
    OrderSource,
    OrderState,
    get_order,
    insert_order,
    transition,
)
from dispatch.subsidy_split import split_price, subsidy_month
from tests import factories
from tests.order_rows import T0, catalogue, provider

START = T0 + dt.timedelta(hours=3)
WAITING_ON_A_LOCK = """SELECT count(*) FROM pg_stat_activity
                       WHERE wait_event_type = 'Lock' AND datname = current_database()"""


async def new_order(pool: asyncpg.Pool) -> tuple[int, int]:
    async with pool.acquire() as conn, conn.transaction():
        await catalogue(conn)
        district, community = await factories.community(conn)
        resident = await factories.resident(conn, community_id=community)
        provider_id = await provider(conn, name="康乐家政", districts=(district,))
        split = split_price(
            8000,
            item_eligible=False,
            programme=None,
            coverage_percent=0,
            allowance_fen=0,
            used_fen=0,
            month=subsidy_month(START, ZoneInfo("Asia/Shanghai")),
        )
        order, _ = await insert_order(
            conn,
            NewOrder(
                resident, "bath", OrderSource.OPERATOR, False, START, START + dt.timedelta(hours=2), "", split
            ),
            actor="user:op",
            at=T0,
        )
    return order.id, provider_id


# The path to each state from new, as actions.
PATHS: dict[OrderState, list[str]] = {
    OrderState.NEW: [],
    OrderState.OFFERED: ["offer"],
    OrderState.ACCEPTED: ["offer", "accept"],
    OrderState.IN_SERVICE: ["offer", "accept", "check_in"],
    OrderState.COMPLETED: ["offer", "accept", "check_in", "check_out"],
    OrderState.CONFIRMED: ["offer", "accept", "check_in", "check_out", "confirm"],
    OrderState.SETTLED: ["offer", "accept", "check_in", "check_out", "confirm", "settle"],
    OrderState.CANCELLED: ["cancel"],
    OrderState.UNFILLED: ["offer", "unfill"],
    OrderState.COMPLAINT: ["offer", "accept", "check_in", "check_out", "complain"],
}


# Which actions each state allows, as the issue states the lane: the table in dispatch/orders.py
# must say the same.
LEGAL: dict[OrderState, set[str]] = {
    OrderState.NEW: {"offer", "unfill", "cancel"},
    OrderState.OFFERED: {"offer_next", "re_offer", "accept", "unfill", "cancel"},
    OrderState.ACCEPTED: {"re_offer", "check_in", "cancel"},
    OrderState.IN_SERVICE: {"check_out"},
    OrderState.COMPLETED: {"confirm", "complain", "rate"},
    OrderState.CONFIRMED: {"complain", "rate", "settle"},
    OrderState.SETTLED: set(),
    OrderState.CANCELLED: set(),
    OrderState.UNFILLED: {"offer", "cancel"},
    OrderState.COMPLAINT: {"rate"},
}


def test_the_table_allows_what_the_lane_says() -> None:
    for state, actions in LEGAL.items():
        assert {a for a, (allowed, _) in TRANSITIONS.items() if state in allowed} == actions, state


def value_for(action: str, provider_id: int) -> object:
    return {
        "accept": provider_id,
        "check_in": START + dt.timedelta(minutes=5),
        "check_out": START + dt.timedelta(minutes=70),
        "confirm": 4,
        "complain": 1,
        "rate": 3,
        "settle": "2026-11",
    }.get(action)


def test_every_state_is_reached_by_some_path() -> None:
    assert set(PATHS) == set(OrderState)
    for state, path in PATHS.items():
        current = OrderState.NEW
        for action in path:
            allowed, target = TRANSITIONS[action]
            assert current in allowed
            current = target or current
        assert current is state


class _Undo(Exception):
    """Rolls one tried action back, so every action is tried from the same state."""


@pytest.mark.parametrize("start", list(PATHS))
async def test_every_action_from_every_state(pool: asyncpg.Pool, start: OrderState) -> None:
    order_id, provider_id = await new_order(pool)
    at = T0 + dt.timedelta(minutes=1)
    async with pool.acquire() as conn:
        for step in PATHS[start]:
            await transition(
                conn,
                order_id,
                step,
                actor="op",
                at=at,
                value=value_for(step, provider_id),
                source=EvidenceSource.API,
            )
        before = await get_order(conn, order_id)
        before_events = len(await timeline(conn, "order", order_id))
        for action, (allowed, target) in TRANSITIONS.items():
            with contextlib.suppress(_Undo):
                async with conn.transaction():
                    await _try(conn, order_id, provider_id, start, action, allowed, target, before_events, at)
                    raise _Undo
            assert await get_order(conn, order_id) == before


async def _try(
    conn: Conn,
    order_id: int,
    provider_id: int,
    start: OrderState,
    action: str,
    allowed: frozenset[OrderState],
    target: OrderState | None,
    before_events: int,
    at: dt.datetime,
) -> None:
    before = await get_order(conn, order_id)
    if start in allowed:
        moved = await transition(
            conn,
            order_id,
            action,
            actor="user:wangfang",
            at=at,
            reason="why not",
            value=value_for(action, provider_id),
            source=EvidenceSource.API,
        )
        assert moved.order.state == (target or start), action
        assert moved.before == start
        entries = await timeline(conn, "order", order_id)
        assert len(entries) == before_events + 1
        last = entries[-1]
        assert (last.from_state, last.to_state, last.actor, last.reason) == (
            start,
            target or start,
            "user:wangfang",
            "why not",
        )
        assert last.occurred_at == at
        return
    with pytest.raises(IllegalTransition) as err:
        await transition(
            conn,
            order_id,
            action,
            actor="op",
            at=at,
            value=value_for(action, provider_id),
            source=EvidenceSource.API,
        )
    assert err.value.current == start, action
    assert start.value in str(err.value)
    assert await get_order(conn, order_id) == before
    assert len(await timeline(conn, "order", order_id)) == before_events


async def test_what_each_step_stamps(pool: asyncpg.Pool) -> None:
    order_id, provider_id = await new_order(pool)
    async with pool.acquire() as conn:
        for step in PATHS[OrderState.SETTLED]:
            await transition(
                conn,
                order_id,
                step,
                actor="op",
                at=T0,
                value=value_for(step, provider_id),
                source=EvidenceSource.SMS,
                reason="老人满意" if step == "confirm" else "",
            )
        order = await get_order(conn, order_id)
    assert order.provider_id == provider_id
    assert order.checked_in_source is EvidenceSource.SMS
    assert order.service_seconds == 65 * 60
    assert (order.rating, order.follow_up_note, order.settlement_ref) == (4, "老人满意", "2026-11")
    assert order.settled_at == T0


async def test_unknown_order(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(OrderNotFound):
            await transition(conn, 424242, "offer", actor="op", at=T0)
        with pytest.raises(OrderNotFound):
            await get_order(conn, 424242)


async def test_two_accepts_race_and_one_wins(pool: asyncpg.Pool) -> None:
    order_id, first = await new_order(pool)
    async with pool.acquire() as conn:
        second = await provider(conn, name="第二家")
        await transition(conn, order_id, "offer", actor="op", at=T0)
    holding, release = asyncio.Event(), asyncio.Event()

    async def accept(provider_id: int, *, hold: bool) -> str:
        async with pool.acquire() as conn, conn.transaction():
            try:
                await transition(
                    conn, order_id, "accept", actor=f"provider:{provider_id}", at=T0, value=provider_id
                )
            except IllegalTransition as exc:
                return exc.current.value
            if hold:
                holding.set()
                await release.wait()
            return "won"

    winner = asyncio.create_task(accept(first, hold=True))
    await holding.wait()
    loser = asyncio.create_task(accept(second, hold=False))
    async with pool.acquire() as watcher:
        # a condition, not a clock: the second is queued behind the first's row lock
        # PostgreSQL announces no lock wait, so it is looked for
        while not await watcher.fetchval(WAITING_ON_A_LOCK):  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    release.set()
    assert await winner == "won"
    assert await loser == "accepted"
    async with pool.acquire() as conn:
        order = await get_order(conn, order_id)
        accepted = [e for e in await timeline(conn, "order", order_id) if e.kind == "order.accepted"]
    assert order.provider_id == first
    assert len(accepted) == 1
