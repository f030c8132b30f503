"""The monthly settlement workbook, read back with openpyxl and checked against hand-computed figures
and the database rows; settling through `careline report settlement --settle`, twice, and the
console's download."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import sys
from io import BytesIO
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from openpyxl import load_workbook

from dispatch.config import REPO_ROOT
from dispatch.orders import EvidenceSource, Order, OrderState
from dispatch.service import Service
from dispatch.settlement import BadMonth, default_ref, parse_month
from dispatch.users import Role, create_user, issue_token
from dispatch.visit_desk import VisitStep
from tests import factories
from tests.order_rows import HOME, catalogue, programme, provider
from tests.order_world import Lane, make_lane

NEAR_SMS = "+8613500000001"
MID_SMS = "+8613500000002"
NEAR = "近邻家政服务有限公司"
MID = "中和护理"
SHANGHAI = dt.timezone(dt.timedelta(hours=8))


@dataclasses.dataclass
class World:
    lane: Lane
    a: int  # in the programme GM (80 % coverage): a co-pay
    b: int  # in no programme
    near: int
    mid: int
    orders: dict[str, Order]


async def take(lane: Lane, order: Order, sms: str, provider_id: int) -> None:
    await lane.reply(sms, f"1 {await lane.code(order.id, provider_id)}")


async def visit(lane: Lane, order: Order, *, minutes: int, late_by: int = 5) -> None:
    start = order.window_start + dt.timedelta(minutes=late_by)
    for step, at in (
        (VisitStep.CHECK_IN, start),
        (VisitStep.CHECK_OUT, start + dt.timedelta(minutes=minutes)),
    ):
        await lane.desk.record_visit(order.id, step, "user:op", source=EvidenceSource.CALL, at=at)


@pytest.fixture
async def world(config: Any, pool: asyncpg.Pool) -> World:
    lane = make_lane(config, pool)
    async with pool.acquire() as conn:
        await catalogue(conn)
        district, community = await factories.community(conn, lat=HOME[0], lon=HOME[1])
        a = await factories.resident(conn, community_id=community, name="王秀英", lat=HOME[0], lon=HOME[1])
        b = await factories.resident(conn, community_id=community, name="李桂兰", lat=HOME[0], lon=HOME[1])
        await programme(conn, a, allowance_fen=20000, coverage=80)
        near = await provider(
            conn, name=NEAR, sms=NEAR_SMS, lat=40.851, lon=111.701, districts=(district,), capacity=9
        )
        mid = await provider(
            conn, name=MID, sms=MID_SMS, lat=40.87, lon=111.72, districts=(district,), capacity=9
        )
    o: dict[str, Order] = {}
    o["sms"] = await lane.order(a)  # bath 80.00: 64.00 subsidy, 16.00 co-pay
    o["mid"] = await lane.order(a)  # declined by near, taken by mid
    o["clean"] = await lane.order(b, "clean")  # 50.00, not eligible
    o["later"] = await lane.order(b, "clean")  # confirmed only after the first run
    o["cancelled"] = await lane.order(b, "clean")
    o["complaint"] = await lane.order(b, "clean")
    o["december"] = await lane.order(a, start_in=dt.timedelta(days=7))  # window 1 December
    lane.clock.advance(minutes=2)
    await lane.reply(NEAR_SMS, f"2 {await lane.code(o['mid'].id, near)}")
    await take(lane, o["mid"], MID_SMS, mid)
    for name in ("sms", "clean", "later", "cancelled", "complaint", "december"):
        await take(lane, o[name], NEAR_SMS, near)
    await lane.desk.cancel(o["cancelled"].id, "user:op", reason="老人住院")

    # the first order's visit by SMS, on time; the others typed in from phone calls afterwards
    code = await lane.code(o["sms"].id, near)
    lane.clock.now = o["sms"].window_start + dt.timedelta(minutes=5)
    await lane.reply(NEAR_SMS, f"3 {code}")
    lane.clock.advance(minutes=90)
    await lane.reply(NEAR_SMS, f"9 {code}")
    lane.clock.now = o["sms"].window_end + dt.timedelta(hours=3)
    await visit(lane, o["mid"], minutes=60)
    await visit(lane, o["clean"], minutes=120)
    await visit(lane, o["later"], minutes=60)
    await visit(lane, o["complaint"], minutes=30)
    await lane.desk.confirm(o["sms"].id, "user:op", rating=5, note_text="老人很满意")
    await lane.desk.confirm(o["mid"].id, "user:op", rating=4)
    await lane.desk.confirm(o["clean"].id, "user:op", rating=3, note_text="打扫一般")
    assert (await lane.desk.confirm(o["complaint"].id, "user:op", rating=2)).state is OrderState.COMPLAINT
    lane.clock.now = o["december"].window_end + dt.timedelta(hours=1)
    await visit(lane, o["december"], minutes=60)
    await lane.desk.confirm(o["december"].id, "user:op", rating=5)
    for name in o:
        o[name] = await lane.get(o[name].id)
    assert (o["sms"].covered_fen, o["sms"].copay_fen, o["mid"].copay_fen) == (6400, 1600, 1600)
    assert o["december"].subsidy_month == dt.date(2026, 12, 1)
    return World(lane, a, b, near, mid, o)


def sheets(data: bytes | Path) -> dict[str, list[tuple[Any, ...]]]:
    book = load_workbook(BytesIO(data) if isinstance(data, bytes) else data)
    return {
        sheet.title: [tuple(row) for row in sheet.iter_rows(values_only=True)] for sheet in book.worksheets
    }


async def careline(db_dsn: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatch.cli",
        *args,
        cwd=REPO_ROOT,
        env={**os.environ, "CARELINE_DATABASE_URL": db_dsn, "CARELINE_LOGGING_LEVEL": "WARNING"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


#             orders, hours, amount, subsidy, co-pay, not covered, mean rating, ratings, residents
NEAR_ROW = (2, 3.5, 130.0, 64.0, 16.0, 50.0, 4.0, 2, 2)  # 1.5 h + 2 h; 80 + 50; ratings 5 and 3
MID_ROW = (1, 1.0, 80.0, 64.0, 16.0, 0.0, 4.0, 1, 1)
TOTAL_ROW = (3, 4.5, 210.0, 128.0, 32.0, 50.0, 4.0, 3, 2)


async def db_totals(pool: asyncpg.Pool) -> dict[int, tuple[Any, ...]]:
    """The same figures straight from the rows, per provider."""
    rows = await pool.fetch(
        """SELECT provider_id, count(*) AS orders, round(sum(service_seconds) / 3600.0, 2) AS hours,
                  sum(price_fen) AS price, sum(covered_fen) AS covered, sum(copay_fen) AS copay,
                  sum(not_eligible_fen) AS ne, round(avg(rating), 2) AS rating, count(rating) AS ratings,
                  count(DISTINCT resident_id) AS residents
           FROM service_orders WHERE subsidy_month = '2026-11-01' AND state IN ('confirmed', 'settled')
           GROUP BY provider_id"""
    )
    return {
        r["provider_id"]: (
            r["orders"],
            float(r["hours"]),
            r["price"] / 100,
            r["covered"] / 100,
            r["copay"] / 100,
            r["ne"] / 100,
            float(r["rating"]),
            r["ratings"],
            r["residents"],
        )
        for r in rows
    }


async def test_workbook_settle_and_rerun(
    world: World, db_dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    out = tmp_path / "settlement.xlsx"
    code, stdout, stderr = await careline(
        db_dsn, "report", "settlement", "--month", "2026-11", "--out", str(out)
    )
    assert code == 0, stderr
    assert stdout.strip() == (
        f"settlement 2026-11: 3 orders; amount 210.00 yuan, subsidy 128.00, co-pay 32.00; written to {out}"
    )
    assert "settlement: 100%" in stderr
    assert "3/3" in stderr  # the progress bar, on stderr
    book = sheets(out)
    assert list(book) == ["汇总 Summary", "服务商 Providers", "补贴项目 Programmes", "服务凭证 Evidence"]

    providers = book["服务商 Providers"]
    assert providers[0][:4] == (
        "服务商ID Provider id",
        "服务商 Provider",
        "统一社会信用代码 Licence",
        "工单数 Orders",
    )
    assert [row[:2] for row in providers[1:3]] == [(world.near, NEAR), (world.mid, MID)]
    assert providers[1][3:] == NEAR_ROW
    assert providers[2][3:] == MID_ROW
    assert providers[3][0] == "合计 Total"
    assert providers[3][3:] == TOTAL_ROW
    assert len(providers) == 4
    from_db = await db_totals(pool)
    assert {row[0]: row[3:] for row in providers[1:3]} == from_db

    programmes = book["补贴项目 Programmes"]
    assert programmes[1:] == [
        ("GM", "政府购买服务", 2, 2.5, 160.0, 128.0, 32.0, 0.0, 4.5, 2, 1),
        (None, "（无补贴项目）", 1, 2.0, 50.0, 0.0, 0.0, 50.0, 3.0, 1, 1),
        ("合计 Total", None, *TOTAL_ROW),
    ]

    evidence = book["服务凭证 Evidence"]
    header = evidence[0]
    rows = {row[0]: dict(zip(header, row, strict=True)) for row in evidence[1:]}
    assert set(rows) == {world.orders[n].id for n in ("sms", "mid", "clean")}
    first = rows[world.orders["sms"].id]
    start = world.orders["sms"].window_start.astimezone(SHANGHAI).replace(tzinfo=None)
    assert first == {
        **first,
        "状态 State": "confirmed",
        "结算编号 Settlement ref": None,
        "服务商 Provider": NEAR,
        "老人 Resident": "王秀英",
        "服务项目 Item": "助浴服务 Bathing (bath)",
        "签到时间 Check-in": start + dt.timedelta(minutes=5),
        "签到方式 Check-in source": "sms",
        "签退时间 Check-out": start + dt.timedelta(minutes=95),
        "签退方式 Check-out source": "sms",
        "服务时长(小时) Hours": 1.5,
        "金额(元) Amount": 80.0,
        "补贴(元) Subsidy": 64.0,
        "自付(元) Co-pay": 16.0,
        "非补贴(元) Not covered": 0.0,
        "补贴项目 Programme": "GM",
        "评分 Rating": 5,
        "回访记录 Follow-up": "老人很满意",
    }
    masked = first["身份证号 ID number"]
    assert len(masked) == 18
    assert "*" in masked
    assert masked != await pool.fetchval("SELECT id_number FROM residents WHERE id = $1", world.a)
    assert first["凭证明细 Evidence reports"].startswith(
        f"check_in sms {start + dt.timedelta(minutes=5):%Y-%m-%d %H:%M}"
    )
    assert rows[world.orders["mid"].id]["签到方式 Check-in source"] == "call"
    summary = dict(book["汇总 Summary"])
    assert (summary["结算月份 Month"], summary["时区 Time zone"]) == ("2026-11", "Asia/Shanghai")
    assert (summary["金额(元) Amount"], summary["补贴(元) Subsidy"], summary["自付(元) Co-pay"]) == (
        210.0,
        128.0,
        32.0,
    )
    assert summary["结算编号 Settlement ref: （未结算 not settled）"] == 3

    # settle: the three confirmed orders of November, through the state machine
    code, stdout, stderr = await careline(
        db_dsn, "report", "settlement", "--month", "2026-11", "--out", str(out), "--settle", "--no-progress"
    )
    assert code == 0, stderr
    assert "3 orders; 3 settled now as JS202611;" in stdout
    assert stderr == ""
    states = await pool.fetch(
        "SELECT id, state, settlement_ref FROM service_orders WHERE settlement_ref IS NOT NULL ORDER BY id"
    )
    assert [tuple(r.values()) for r in states] == [
        (world.orders[n].id, "settled", "JS202611") for n in ("sms", "mid", "clean")
    ]
    assert await world.lane.kinds(world.orders["sms"].id) == [
        *["order.created", "order.offered", "order.accepted", "order.in_service"],
        *["order.completed", "order.confirmed", "order.settled"],
    ]
    settled = sheets(out)
    assert settled["服务商 Providers"] == providers
    assert {row[1] for row in settled["服务凭证 Evidence"][1:]} == {"settled"}
    assert {row[2] for row in settled["服务凭证 Evidence"][1:]} == {"JS202611"}

    # a re-run settles nothing new; an order confirmed since joins under the same reference
    code, stdout, _ = await careline(
        db_dsn, "report", "settlement", "--month", "2026-11", "--out", str(out), "--settle", "--no-progress"
    )
    assert (code, "3 orders; 0 settled now as JS202611;" in stdout) == (0, True)
    await world.lane.desk.confirm(world.orders["later"].id, "user:op", rating=5)
    code, stdout, _ = await careline(
        db_dsn, "report", "settlement", "--month", "2026-11", "--out", str(out), "--settle", "--no-progress"
    )
    assert (code, "4 orders; 1 settled now as JS202611;" in stdout) == (0, True)
    again = sheets(out)["服务商 Providers"]
    assert again[1][3:] == (3, 4.5, 180.0, 64.0, 16.0, 100.0, 4.33, 3, 2)  # + 1 h, 50.00, rating 5
    assert {row[0]: row[3:] for row in again[1:3]} == await db_totals(pool)
    # December is not November's
    assert await pool.fetchval(
        "SELECT state FROM service_orders WHERE id = $1", world.orders["december"].id
    ) == ("confirmed")


async def test_command_refuses_bad_input(db_dsn: str, tmp_path: Path) -> None:
    code, _, err = await careline(
        db_dsn, "report", "settlement", "--month", "2026-13", "--out", str(tmp_path / "x")
    )
    assert (code, err.strip()) == (1, "careline: --month: expected a month such as 2026-11, got '2026-13'")
    code, _, err = await careline(
        db_dsn,
        "report",
        "settlement",
        "--month",
        "2026-11",
        "--out",
        str(tmp_path / "no" / "x.xlsx"),
        "--settle",
    )
    assert code == 1
    assert "FileNotFoundError" in err
    code, _, err = await careline(
        db_dsn, "report", "settlement", "--month", "2026-11", "--out", "x.xlsx", "--settle", "--ref", "a b"
    )
    assert (code, err.strip()) == (1, "careline: --ref: letters, digits, - and _ only, at most 40")


def test_months() -> None:
    assert parse_month("2026-11") == dt.date(2026, 11, 1)
    assert default_ref(dt.date(2026, 2, 1)) == "JS202602"
    for bad in ("2026-1", "2026-00", "1999-12", "2026/11", "", "2026-11-01"):
        with pytest.raises(BadMonth):
            parse_month(bad)


async def test_console_download(world: World, service: Service) -> None:
    assert service.runtime is not None
    async with service.runtime.pool.acquire() as conn:
        supervisor = await issue_token(conn, (await create_user(conn, "banzhang", Role.SUPERVISOR)).id)
        operator = await issue_token(conn, (await create_user(conn, "wangfang", Role.OPERATOR)).id)
    async with aiohttp.ClientSession(base_url=service.url) as http:
        headers = {"Authorization": f"Bearer {supervisor}"}
        async with http.get("/api/v1/reports/settlement?month=2026-11", headers=headers) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            assert resp.headers["Content-Disposition"] == 'attachment; filename="settlement-2026-11.xlsx"'
            book = sheets(await resp.read())
        assert book["服务商 Providers"][1][3:] == NEAR_ROW
        assert book["服务商 Providers"][3][3:] == TOTAL_ROW
        async with http.get("/api/v1/reports/settlement?month=2026-12", headers=headers) as resp:
            december = sheets(await resp.read())
        assert december["服务商 Providers"][1][:4] == (
            world.near,
            NEAR,
            december["服务商 Providers"][1][2],
            1,
        )
        for query, status in [("", 400), ("?month=2026-13", 400), ("?month=x", 400)]:
            async with http.get(f"/api/v1/reports/settlement{query}", headers=headers) as resp:
                assert resp.status == status, query
        async with http.get(
            "/api/v1/reports/settlement?month=2026-11", headers={"Authorization": f"Bearer {operator}"}
        ) as resp:
            assert resp.status == 403
