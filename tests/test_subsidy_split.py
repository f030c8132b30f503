"""Who pays for an order: the programme's share, the co-pay, what is not covered, month by month."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from dispatch.config import Config
from dispatch.orders import OrderSource
from dispatch.subsidy_split import split_price, subsidy_month
from tests import factories
from tests.order_rows import catalogue, programme, provider
from tests.order_world import make_lane

SHANGHAI = ZoneInfo("Asia/Shanghai")
OCT = dt.date(2026, 10, 1)


def split(price: int, **kw: object) -> tuple[int, int, int]:
    args: dict[str, object] = {
        "item_eligible": True,
        "programme": "GM",
        "coverage_percent": 80,
        "allowance_fen": 20000,
        "used_fen": 0,
        "month": OCT,
    }
    args.update(kw)
    result = split_price(price, **args)  # type: ignore[arg-type]
    assert result.covered_fen + result.copay_fen + result.not_eligible_fen == price
    return result.covered_fen, result.copay_fen, result.not_eligible_fen


@pytest.mark.parametrize(
    ("price", "kw", "expected"),
    [
        (8000, {}, (6400, 1600, 0)),
        (8000, {"coverage_percent": 100}, (8000, 0, 0)),
        (8000, {"item_eligible": False}, (0, 0, 8000)),
        (8000, {"programme": None}, (0, 0, 8000)),
        (8000, {"used_fen": 17000}, (3000, 1600, 3400)),  # 3,000 fen of the allowance left
        (8000, {"used_fen": 20000}, (0, 1600, 6400)),
        (8000, {"used_fen": 25000}, (0, 1600, 6400)),  # never below nothing left
        (999, {"coverage_percent": 33}, (329, 670, 0)),  # the programme pays whole fen, rounded down
        (0, {}, (0, 0, 0)),
    ],
)
def test_split(price: int, kw: dict[str, object], expected: tuple[int, int, int]) -> None:
    assert split(price, **kw) == expected


def test_reasons_say_why() -> None:
    over = split_price(
        8000,
        item_eligible=True,
        programme="GM",
        coverage_percent=80,
        allowance_fen=5000,
        used_fen=0,
        month=OCT,
    )
    assert [en for _, en in over.reasons] == [
        "programme pays 80%, 50.00 yuan of the month's allowance left",
        "14.00 yuan over the month's allowance, paid by the resident",
    ]
    plain = split_price(
        8000,
        item_eligible=False,
        programme="GM",
        coverage_percent=80,
        allowance_fen=5000,
        used_fen=0,
        month=OCT,
    )
    assert plain.reasons == (("该服务项目不在补贴范围", "the item is not eligible for subsidy"),)


def test_month_is_cut_in_shanghai() -> None:
    late_october = dt.datetime(2026, 10, 31, 23, 30, tzinfo=SHANGHAI)
    early_november = dt.datetime(2026, 11, 1, 0, 30, tzinfo=SHANGHAI)
    # both are 31 October in UTC
    assert late_october.astimezone(dt.UTC).day == early_november.astimezone(dt.UTC).day == 31
    assert subsidy_month(late_october, SHANGHAI) == dt.date(2026, 10, 1)
    assert subsidy_month(early_november, SHANGHAI) == dt.date(2026, 11, 1)


async def test_orders_draw_on_their_own_month_allowance(config: Config, pool: asyncpg.Pool) -> None:
    lane = make_lane(config, pool, start=dt.datetime(2026, 10, 30, 12, 0, tzinfo=SHANGHAI))
    async with pool.acquire() as conn:
        await catalogue(conn)
        district, community = await factories.community(conn)
        resident = await factories.resident(conn, community_id=community)
        await programme(conn, resident, allowance_fen=10000, coverage=80)
        await provider(conn, name="康乐家政", districts=(district,), capacity=10)

    async def take(local_start: dt.datetime, item: str = "bath") -> tuple[int, int, int, dt.date, int]:
        offered = await lane.desk.create_order(
            resident_id=resident,
            item_code=item,
            window_start=local_start,
            window_end=local_start + dt.timedelta(hours=1),
            source=OrderSource.OPERATOR,
            actor="user:op",
        )
        o = offered.order
        return o.covered_fen, o.copay_fen, o.not_eligible_fen, o.subsidy_month, o.id

    late_october = dt.datetime(2026, 10, 31, 23, 30, tzinfo=SHANGHAI)
    early_november = dt.datetime(2026, 11, 1, 0, 30, tzinfo=SHANGHAI)
    first = await take(late_october)
    assert first[:4] == (6400, 1600, 0, dt.date(2026, 10, 1))
    second = await take(late_october - dt.timedelta(hours=2))
    assert second[:4] == (3600, 1600, 2800, dt.date(2026, 10, 1))  # 3,600 fen was left in October
    november = await take(early_november)
    assert november[:4] == (6400, 1600, 0, dt.date(2026, 11, 1))  # a new month, a new allowance
    assert (await take(late_october, "clean"))[:3] == (0, 0, 5000)  # cleaning is not subsidised

    # a cancelled order gives its share back
    await lane.desk.cancel(first[4], "user:op", reason="老人取消")
    again = await take(late_october)
    assert again[:4] == (6400, 1600, 0, dt.date(2026, 10, 1))


async def test_resident_allowance_overrides_the_programme(config: Config, pool: asyncpg.Pool) -> None:
    lane = make_lane(config, pool)
    async with pool.acquire() as conn:
        await catalogue(conn)
        district, community = await factories.community(conn)
        resident = await factories.resident(conn, community_id=community)
        await programme(conn, resident, allowance_fen=100000, coverage=80, own_allowance=1000)
        await provider(conn, name="康乐家政", districts=(district,))
    order = await lane.order(resident)
    assert (order.covered_fen, order.copay_fen, order.not_eligible_fen) == (1000, 1600, 5400)
    assert (order.allowance_fen, order.allowance_left_fen, order.subsidy_programme) == (1000, 1000, "GM")
    assert order.split.reasons[1][1] == "54.00 yuan over the month's allowance, paid by the resident"
