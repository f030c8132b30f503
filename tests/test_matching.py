"""Matching: who may be offered an order, and how each part of the score moves the ranking.

Each factor is checked with two providers that differ in that factor only, both ways round;
fairness is also checked over a simulated day of orders, which it must spread across the
franchisees where the nearest would otherwise take them all.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Awaitable, Callable
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from dispatch.config import Config
from dispatch.database import Conn
from dispatch.matching import Candidate, ProviderFigures, ScoreWeights, rank, rank_candidates, score_parts
from dispatch.orders import NewOrder, Order, OrderSource, insert_order, transition
from dispatch.subsidy_split import split_price, subsidy_month
from providers.jobs import PartyType, close_job, open_job
from tests import factories
from tests.order_rows import HOME, T0, catalogue, provider
from tests.order_world import Lane, lane_config, make_lane

START = T0 + dt.timedelta(hours=3)
WEIGHTS = ScoreWeights(distance=0.35, rating=0.2, acceptance=0.15, load=0.1, fairness=0.2, distance_half_km=5)
# about 1 km and 5 km north of the resident
ONE_KM, FIVE_KM = (HOME[0] + 0.009, HOME[1]), (HOME[0] + 0.045, HOME[1])


@dataclasses.dataclass
class Place:
    lane: Lane
    district: int
    community: int
    other_district: int
    resident: int


@pytest.fixture
async def place(config: Config, pool: asyncpg.Pool) -> Place:
    lane = make_lane(config, pool)
    async with pool.acquire() as conn:
        await catalogue(conn)
        district, community = await factories.community(conn, district="新城区", lat=HOME[0], lon=HOME[1])
        other_district, _ = await factories.community(conn, district="武川县", lat=41.1, lon=111.45)
        resident = await factories.resident(conn, community_id=community, lat=HOME[0], lon=HOME[1])
    return Place(lane, district, community, other_district, resident)


async def bare_order(conn: Conn, resident: int, start: dt.datetime = START, item: str = "bath") -> Order:
    """An order in state `new`, stored without offering it."""
    split = split_price(
        8000,
        item_eligible=False,
        programme=None,
        coverage_percent=0,
        allowance_fen=0,
        used_fen=0,
        month=subsidy_month(start, ZoneInfo("Asia/Shanghai")),
    )
    order, _ = await insert_order(
        conn,
        NewOrder(
            resident, item, OrderSource.OPERATOR, False, start, start + dt.timedelta(hours=2), "", split
        ),
        actor="test",
        at=T0,
    )
    return order


async def give(
    conn: Conn, resident: int, provider_id: int, start: dt.datetime, *, accepted_at: dt.datetime
) -> None:
    """An order `provider_id` accepted at `accepted_at`, for the window from `start`."""
    order = await bare_order(conn, resident, start)
    await transition(conn, order.id, "offer", actor="test", at=accepted_at)
    await transition(conn, order.id, "accept", actor="test", at=accepted_at, value=provider_id)
    await conn.execute("UPDATE service_orders SET accepted_at = $2 WHERE id = $1", order.id, accepted_at)


async def answered(conn: Conn, provider_id: int, reasons: list[str]) -> None:
    """Past offers of other orders, closed with these reasons."""
    for reason in reasons:
        job = await open_job(
            conn,
            kind="order_offer",
            subject_type="order",
            subject_id=0,
            party_type=PartyType.PROVIDER,
            party_id=provider_id,
            expires_at=T0 + dt.timedelta(days=1),
            now=T0 - dt.timedelta(days=2),
        )
        await close_job(conn, job.id, reason=reason, at=T0 - dt.timedelta(days=1))


async def ranked(place: Place, order: Order | None = None) -> list[Candidate]:
    async with place.lane.pool.acquire() as conn:
        order = order or await bare_order(conn, place.resident)
        return await rank_candidates(conn, order, T0, WEIGHTS)


async def test_only_those_who_may_take_it_are_candidates(place: Place) -> None:
    async with place.lane.pool.acquire() as conn:
        by_district = await provider(conn, name="按区服务", districts=(place.district,))
        by_community = await provider(conn, name="按社区服务", communities=(place.community,))
        both = await provider(
            conn, name="区和社区都服务", districts=(place.district,), communities=(place.community,)
        )
        await provider(conn, name="外区", districts=(place.other_district,))
        await provider(conn, name="不做助浴", items=("clean",), districts=(place.district,))
        await provider(conn, name="已暂停", status="suspended", districts=(place.district,))
        full = await provider(conn, name="已满", capacity=1, districts=(place.district,))
        await give(conn, place.resident, full, START + dt.timedelta(hours=1), accepted_at=T0)
        later = await provider(conn, name="满但时段不重叠", capacity=1, districts=(place.district,))
        await give(conn, place.resident, later, START + dt.timedelta(hours=2), accepted_at=T0)
        await provider(conn, name="零容量", capacity=0, districts=(place.district,))
    names = sorted(c.figures.name for c in await ranked(place))
    assert names == sorted(["按区服务", "按社区服务", "区和社区都服务", "满但时段不重叠"])
    assert len({by_district, by_community, both}) == 3


async def test_who_declined_or_let_an_offer_expire_is_not_ranked_again(place: Place) -> None:
    lane = place.lane
    async with lane.pool.acquire() as conn:
        first = await provider(conn, name="近", lat=ONE_KM[0], lon=ONE_KM[1], districts=(place.district,))
        second = await provider(conn, name="远", lat=FIVE_KM[0], lon=FIVE_KM[1], districts=(place.district,))
        third = await provider(conn, name="更远", lat=41.0, lon=111.9, districts=(place.district,))
    order = await lane.order(place.resident)
    assert [c.provider_id for c in await ranked(place, order)] == [second, third]  # first holds the offer
    await lane.reply(await lane.pool.fetchval("SELECT sms_e164 FROM providers WHERE id = $1", first), "2")
    assert [c.provider_id for c in await ranked(place, order)] == [third]
    await lane.fire(minutes=10)  # second lets it expire
    assert [c.provider_id for c in await ranked(place, order)] == []


Setup = Callable[[Conn, Place, int, int], Awaitable[None]]


async def farther(conn: Conn, place: Place, better: int, worse: int) -> None:
    await conn.execute("UPDATE providers SET base_lat = $2, base_lon = $3 WHERE id = $1", better, *ONE_KM)
    await conn.execute("UPDATE providers SET base_lat = $2, base_lon = $3 WHERE id = $1", worse, *FIVE_KM)


async def rated_lower(conn: Conn, place: Place, better: int, worse: int) -> None:
    await conn.execute("UPDATE providers SET rating = 4.8 WHERE id = $1", better)
    await conn.execute("UPDATE providers SET rating = 3.1 WHERE id = $1", worse)


async def declines_more(conn: Conn, place: Place, better: int, worse: int) -> None:
    await answered(conn, better, ["accepted", "accepted", "declined", "cancelled"])
    await answered(conn, worse, ["accepted", "declined", "expired", "taken_by_other"])


async def busier(conn: Conn, place: Place, better: int, worse: int) -> None:
    await give(
        conn, place.resident, worse, START + dt.timedelta(minutes=30), accepted_at=T0 - dt.timedelta(days=40)
    )


async def more_recent_orders(conn: Conn, place: Place, better: int, worse: int) -> None:
    earlier = T0 - dt.timedelta(days=3)
    for day in range(4):
        await give(conn, place.resident, worse, earlier - dt.timedelta(hours=day), accepted_at=earlier)
    # older than 30 days: counts for nobody
    for day in range(6):
        old = T0 - dt.timedelta(days=31 + day)
        await give(conn, place.resident, better, old, accepted_at=old)


@pytest.mark.parametrize(
    ("setup", "part"),
    [
        (farther, "distance"),
        (rated_lower, "rating"),
        (declines_more, "acceptance"),
        (busier, "load"),
        (more_recent_orders, "fairness"),
    ],
)
async def test_each_factor_moves_the_ranking(place: Place, setup: Setup, part: str) -> None:
    async with place.lane.pool.acquire() as conn:
        a = await provider(conn, name="甲", districts=(place.district,))
        b = await provider(conn, name="乙", districts=(place.district,))
    # alike in everything, the lower id goes first
    assert [c.provider_id for c in await ranked(place)] == [a, b]
    async with place.lane.pool.acquire() as conn:
        await setup(conn, place, b, a)
    first, second = await ranked(place)
    assert (first.provider_id, second.provider_id) == (b, a)
    assert getattr(first.parts, part) > getattr(second.parts, part)
    others = [p for p in ("distance", "rating", "acceptance", "load", "fairness") if p != part]
    assert [getattr(first.parts, p) for p in others] == [getattr(second.parts, p) for p in others]
    assert first.score > second.score


def figures(**kw: object) -> ProviderFigures:
    values: dict[str, object] = {
        "provider_id": 1,
        "name": "甲",
        "price_fen": 8000,
        "distance_km": 5.0,
        "rating": 3.0,
        "accepted": 3,
        "answered": 4,
        "busy_in_window": 1,
        "pending_offers": 0,
        "capacity": 2,
        "orders_30d": 5,
    }
    values.update(kw)
    return ProviderFigures(**values)  # type: ignore[arg-type]


def test_the_parts_follow_the_documented_formula() -> None:
    parts = score_parts(figures(), most_orders_30d=10, distance_half_km=5)
    assert parts.distance == pytest.approx(0.5)
    assert parts.rating == pytest.approx(0.5)
    assert parts.acceptance == pytest.approx(4 / 6)
    assert parts.load == pytest.approx(0.5)
    assert parts.fairness == pytest.approx(0.5)
    unknown = score_parts(
        figures(distance_km=None, rating=None, accepted=0, answered=0, busy_in_window=3, orders_30d=0),
        most_orders_30d=0,
        distance_half_km=5,
    )
    assert (unknown.distance, unknown.rating, unknown.acceptance, unknown.load, unknown.fairness) == (
        0.0,
        0.5,
        0.5,
        0.0,
        1.0,
    )


def test_weights_decide_which_factor_wins() -> None:
    near_but_poor = figures(provider_id=1, distance_km=0.5, rating=2.0)
    far_but_good = figures(provider_id=2, distance_km=12.0, rating=5.0)
    only_distance = dataclasses.replace(WEIGHTS, rating=0, acceptance=0, load=0, fairness=0)
    only_rating = dataclasses.replace(WEIGHTS, distance=0, acceptance=0, load=0, fairness=0)
    assert [c.provider_id for c in rank([far_but_good, near_but_poor], only_distance)] == [1, 2]
    assert [c.provider_id for c in rank([near_but_poor, far_but_good], only_rating)] == [2, 1]
    best = rank([near_but_poor], WEIGHTS)[0]
    assert 0 <= best.score <= 1


async def test_candidates_carry_reasons_in_both_languages(place: Place) -> None:
    async with place.lane.pool.acquire() as conn:
        await provider(conn, name="甲", lat=ONE_KM[0], lon=ONE_KM[1], rating=4.5, districts=(place.district,))
        await provider(conn, name="乙", lat=None, lon=None, districts=(place.district,))
    located, unknown = await ranked(place)
    assert [r.en for r in located.reasons] == [
        "1.0 km away",
        "rated 4.5",
        "has not answered an offer yet",
        "0 of 2 places taken in the window, 0 offers awaiting its reply",
        "0 orders in the last 30 days",
    ]
    assert located.reasons[0].zh == "距离 1.0 公里"
    assert unknown.reasons[0].en == "no location on file: counted as far away"
    assert located.as_json(1)["reasons"][1] == {"zh": "评分 4.5", "en": "rated 4.5"}


async def simulate_day(lane: Lane, place: Place, providers: dict[int, str]) -> Counter[int]:
    """Twelve orders an hour apart, each accepted by the provider asked first and served."""
    taken: Counter[int] = Counter()
    day_start = lane.clock.now
    for hour in range(12):
        lane.clock.now = day_start + dt.timedelta(hours=hour)
        order = await lane.order(place.resident, "clean", start_in=dt.timedelta(hours=1), hours=1)
        asked = (await lane.offers(order.id))[0]["provider_id"]
        phone = providers[asked]
        await lane.reply(phone, "1")
        lane.clock.now = order.window_start
        await lane.reply(phone, "3")
        lane.clock.now = order.window_end
        await lane.reply(phone, "9")
        taken[asked] += 1
    return taken


async def day_of_orders(
    config: Config, pool: asyncpg.Pool, **weights: float
) -> tuple[Counter[int], list[int]]:
    lane = make_lane(lane_config(config, **weights), pool)
    async with pool.acquire() as conn:
        await catalogue(conn)
        district, community = await factories.community(conn, lat=HOME[0], lon=HOME[1])
        resident = await factories.resident(conn, community_id=community, lat=HOME[0], lon=HOME[1])
        phones = {}
        for i, km in enumerate((0.5, 1.0, 1.5)):
            sms = f"+8613800000{i:03d}"
            pid = await provider(
                conn, name=f"加盟商{i}", sms=sms, lat=HOME[0] + km / 111, lon=HOME[1], districts=(district,)
            )
            phones[pid] = sms
    place = Place(lane, district, community, district, resident)
    return await simulate_day(lane, place, phones), list(phones)


async def test_fairness_spreads_a_day_of_orders_across_franchisees(
    config: Config, pool: asyncpg.Pool
) -> None:
    taken, _ = await day_of_orders(config, pool)
    assert sum(taken.values()) == 12
    assert len(taken) == 3
    assert max(taken.values()) <= 6
    assert min(taken.values()) >= 3


async def test_without_fairness_the_nearest_takes_every_order(config: Config, pool: asyncpg.Pool) -> None:
    taken, (nearest, *_) = await day_of_orders(config, pool, weight_fairness=0.0)
    assert taken == Counter({nearest: 12})
