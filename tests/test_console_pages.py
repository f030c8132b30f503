"""The providers, teams, SMS, devices and reports pages in a real Chromium: a reply typed in the
outbox moves an order, a silent device comes first, a day's known figures are drawn, and an operator
gets neither the settlement download nor administrators' pages."""

from __future__ import annotations

import datetime as dt

import asyncpg
from playwright.async_api import expect

from dispatch.service import Service
from dispatch.users import Role
from tests import factories, order_rows
from tests.browser import Console, add_user
from tests.helpers import stop_deadlines
from tests.test_daily_figures import EXPECTED, build_day


async def test_a_reply_typed_in_the_outbox_moves_the_order(console: Console, pool: asyncpg.Pool) -> None:
    await add_user(pool, "wangfang", Role.OPERATOR)
    async with pool.acquire() as conn:
        await order_rows.catalogue(conn)
        district, community = await factories.community(conn)
        resident = await factories.resident(conn, community_id=community, name="张玉梅")
        provider = await order_rows.provider(
            conn, name="暖心家政", sms="+8613500001111", districts=(district,), rating=4.5
        )
    page = await console.logged_in("wangfang")
    token = await page.get_attribute('meta[name="csrf-token"]', "content")
    assert token
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    created = await page.request.post(
        console.url + "/api/v1/orders",
        data={
            "resident_id": resident,
            "item_code": "bath",
            "window_start": start.isoformat(),
            "window_end": (start + dt.timedelta(hours=2)).isoformat(),
        },
        headers={"X-CSRF-Token": token},
    )
    assert created.status == 201, await created.text()
    order_id = (await created.json())["order"]["id"]
    async with pool.acquire() as conn:
        code = await conn.fetchval(
            "SELECT code FROM sms_jobs WHERE subject_type = 'order' AND subject_id = $1 AND party_id = $2",
            order_id,
            provider,
        )

    # the providers page shows it with its rating and the order not yet in hand
    await page.click("a[href='/console/providers']")
    row = page.locator(f"#providers tr[data-provider-id='{provider}']")
    await expect(row).to_contain_text("暖心家政")
    await expect(row.locator(".rating")).to_have_text("4.5")
    await expect(row.locator(".load")).to_have_text("0 / 2")
    await expect(row).to_contain_text("养老护理")

    await page.click("a[href='/console/sms']")
    offer = page.locator("#sms-list tbody tr").filter(has_text=code).first
    await expect(offer).to_contain_text(f"工单 #{order_id}")
    await expect(offer.locator(".subject-state")).to_have_text("已派单")
    await offer.locator("button.reply-to").click()
    assert await page.input_value("#reply-from") == "13500001111"
    await page.fill("#reply-body", f"1 {code}")
    await page.click("#reply-send")

    replied = page.locator("#replied")
    await expect(replied).to_contain_text(f"1 {code}")
    await expect(replied.locator(".outcome")).to_have_text("已处理")
    await expect(replied.locator(".subject-state")).to_have_text("已接单")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT state FROM service_orders WHERE id = $1", order_id) == "accepted"
    # now in the provider's hands
    await page.goto(console.url + "/console/providers")
    await expect(page.locator(f"#providers tr[data-provider-id='{provider}'] .load")).to_have_text("1 / 2")


async def test_teams_show_their_roster(console: Console, pool: asyncpg.Pool) -> None:
    await add_user(pool, "wangfang", Role.OPERATOR)
    async with pool.acquire() as conn:
        district, _ = await factories.community(conn, district="赛罕区")
        team = await factories.team(
            conn,
            code="SH01",
            district_ids=[district],
            lat=40.8,
            lon=111.7,
            roster=[(5, dt.time(20), dt.time(8))],
        )
    page = await console.logged_in("wangfang")
    await page.goto(console.url + "/console/teams")
    row = page.locator(f"#teams tr[data-team-id='{team}']")
    await expect(row).to_contain_text("SH01")
    await expect(row).to_contain_text("赛罕区")
    await row.locator("a").click()
    friday = page.locator("#team-roster tr").nth(4)
    await expect(friday).to_contain_text("星期五")
    await expect(friday).to_contain_text("20:00–08:00 (次日)")


async def test_silent_devices_come_first(console: Console, pool: asyncpg.Pool) -> None:
    await add_user(pool, "wangfang", Role.OPERATOR)
    now = dt.datetime.now(dt.UTC)
    async with pool.acquire() as conn:
        _, community = await factories.community(conn)
        resident = await factories.resident(conn, community_id=community, name="刘淑珍")
        heard = await factories.device(conn, resident_id=resident)
        silent = await factories.device(conn, resident_id=resident)
        await conn.execute(
            "UPDATE devices SET serial = 'AAA-HEARD', last_seen_at = $2, battery_percent = 90 WHERE id = $1",
            heard,
            now - dt.timedelta(hours=1),
        )
        await conn.execute(
            """UPDATE devices SET serial = 'ZZZ-SILENT', last_seen_at = $2, battery_percent = 12,
                      heartbeat_interval_s = 86400 WHERE id = $1""",
            silent,
            now - dt.timedelta(days=3, hours=1),
        )
    page = await console.logged_in("wangfang")
    await page.click("a[href='/console/devices']")
    rows = page.locator("#devices tbody tr")
    await expect(rows).to_have_count(2)
    first = rows.first
    await expect(first).to_have_attribute("data-device-id", str(silent))
    await expect(first).to_contain_text("失联")
    await expect(first.locator(".missed")).to_have_text("3")
    await expect(first.locator(".battery")).to_have_text("12%")
    await expect(first).to_contain_text("刘淑珍")
    await expect(rows.nth(1)).to_have_attribute("data-device-id", str(heard))
    await expect(rows.nth(1).locator(".missed")).to_have_text("0")
    await expect(page.locator("#device-counts")).to_have_text("共 2 台，1 台失联")


async def test_the_reports_page_draws_a_days_figures(
    console: Console, pool: asyncpg.Pool, service: Service
) -> None:
    assert service.runtime is not None
    await stop_deadlines(service)  # the day's offers would expire at once, on the wall clock
    await build_day(service.runtime.config, pool)
    await add_user(pool, "lina", Role.SUPERVISOR)
    page = await console.logged_in("lina")
    await page.click("a[href='/console/reports']")
    await page.goto(console.url + "/console/reports?day=" + EXPECTED["day"])

    figures = page.locator("#call-figures")
    await expect(figures.locator("[data-key='calls-total'] .value")).to_have_text("8")
    await expect(figures.locator("[data-key='calls-answered'] .value")).to_have_text("4")
    await expect(figures.locator("[data-key='calls-abandoned'] .value")).to_have_text("1")
    await expect(figures.locator("[data-key='answer-p50'] .value")).to_have_text("30 秒")
    await expect(figures.locator("[data-key='answer-p90'] .value")).to_have_text("82 秒")
    alerts = page.locator("#alert-figures")
    await expect(alerts.locator("[data-key='alerts-total'] .value")).to_have_text("3")
    await expect(alerts.locator("[data-key='ack-p50'] .value")).to_have_text("20 秒")

    # calls by hour: the bars' values are the hour's counts
    hours = page.locator("#chart-hours svg")
    for hour, row in enumerate(EXPECTED["calls"]["by_hour"]):
        for series in ("answered", "abandoned"):
            bar = hours.locator(f"rect[data-hour='{hour}'][data-series='{series}']")
            await expect(bar).to_have_attribute("data-value", str(row[series]))
    tall = await hours.locator("rect[data-hour='10'][data-series='answered']").get_attribute("height")
    short = await hours.locator("rect[data-hour='11'][data-series='answered']").get_attribute("height")
    assert float(tall or 0) > 0 == float(short or 0)

    times = page.locator("#chart-times")
    await expect(times.locator("text.value[data-key='on_scene-p90']")).to_have_text("1440 秒")
    await expect(times.locator("text.value[data-key='dispatch-p50']")).to_have_text("90 秒")
    kinds = page.locator("#chart-alerts")
    await expect(kinds.locator("text.value[data-key='fall']")).to_have_text("2")
    await expect(kinds.locator("g[data-key='fall'] text.label")).to_have_text("跌倒")
    await expect(kinds.locator("text.value[data-key='sos']")).to_have_text("1")
    orders = page.locator("#chart-orders")
    for state in EXPECTED["orders"]["by_state"]:
        await expect(orders.locator(f"rect[data-key='{state['state']}']")).to_have_attribute(
            "data-value", str(state["count"])
        )
    await expect(orders.locator("g[data-key='accepted'] text.label")).to_have_text("已接单")
    await expect(page.locator("#chart-sms text.value[data-key='failed']")).to_have_text("2")
    # service levels: the day's calls answered within 60 s, against their target line
    levels = page.locator("#chart-levels g.row")
    await expect(levels.first.locator("line.target")).to_have_count(1)
    await expect(page.locator("#reports-error")).to_be_hidden()

    # a supervisor downloads the month's settlement
    assert await page.locator("#settlement-download").count() == 1
    async with page.expect_download() as download:
        await page.fill("#settlement-month", "2026-11")
        await page.click("#settlement-download")
    assert (await download.value).suggested_filename == "settlement-2026-11.xlsx"


async def test_an_operator_gets_no_settlement_nor_admin_pages(console: Console, pool: asyncpg.Pool) -> None:
    await add_user(pool, "wangfang", Role.OPERATOR)
    page = await console.logged_in("wangfang")
    await page.click("a[href='/console/reports']")
    await expect(page.locator("#call-figures [data-key='calls-total'] .value")).to_have_text("0")
    assert await page.locator("#settlement-download").count() == 0
    refused = await page.request.get(console.url + "/api/v1/reports/settlement?month=2026-11")
    assert refused.status == 403
    for path in ("/console/admin/access-log", "/console/residents/new"):
        response = await page.goto(console.url + path)
        assert response is not None
        assert response.status == 403
        await expect(page.locator("#error-title")).to_have_text("无权访问")
    assert await page.locator("a[href='/console/admin/access-log']").count() == 0
