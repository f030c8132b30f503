"""The floor in a real Chromium: a ringing call pops the caller's card, an SOS alarm is flagged red and
is acknowledged and dispatched by key, and an order taken from a card follows the provider's SMS reply."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import time

import aiohttp
import asyncpg
import pytest
from playwright.async_api import Page, expect

from dispatch.config import Config
from dispatch.users import Role, create_user, issue_token
from telephony.alarms.integrations import add_integration
from telephony.sim_calls import CallFactory
from telephony.simulator import AmiPeer, Send
from tests import factories, order_rows
from tests.alarm_helpers import SECRET_KEY, alarm_config, post_signed, unit
from tests.ami_peer import asterisk_config
from tests.browser import Console, add_user

MOBILE = "+8613800138000"


@pytest.fixture
def config(config: Config, peer: AmiPeer) -> Config:
    """One Asterisk (the test peer), alarm intake on a free port, integrations usable."""
    return dataclasses.replace(alarm_config(config), asterisk=(asterisk_config(peer.port),))


async def live(page: Page) -> None:
    """The page's WebSocket is subscribed: events from now on reach it."""
    await expect(page.locator("#live-status")).to_have_text("● 实时", timeout=10_000)


async def test_a_ringing_call_pops_the_callers_card(
    console: Console, pool: asyncpg.Pool, peer: AmiPeer
) -> None:
    await add_user(pool, "wangfang", Role.OPERATOR)
    async with pool.acquire() as conn:
        _, community = await factories.community(conn, name="海东路社区")
        await factories.resident(conn, community_id=community, name="李桂兰")
        caller = await factories.resident(
            conn, community_id=community, name="王秀英", phone=MOBILE, contacts=[("王强", "+8613911112222")]
        )
    page = await console.logged_in("wangfang")
    await live(page)
    await peer.wait(lambda: peer.logins > 0)

    # The call rings in the queue and nobody has answered yet: only the frames before the answer.
    call = CallFactory(epoch=int(time.time())).inbound("13800138000", ring_seconds=20)
    ringing = [(at, frame) for at, frame in call if at < 20]
    peer.send(Send(tuple(f for _, f in ringing), tuple(at for at, _ in ringing)))

    card = page.locator(f"#resident-card[data-resident-id='{caller}']")
    await expect(card).to_be_visible(timeout=15_000)
    await expect(page.locator("#card-name")).to_contain_text("王秀英")
    await expect(card).to_contain_text("海东路社区")
    await expect(page.locator("#card-contacts")).to_contain_text("王强")
    # the call on the board, waiting, with its wait counting
    board = page.locator("#calls .call").first
    await expect(board).to_contain_text("王秀英")
    await expect(board).to_have_class(re.compile(r"\bringing\b"))
    timer = board.locator(".timer")
    await expect(timer).to_have_text(re.compile(r"\d+:\d\d"))
    waited = await timer.text_content()
    await expect(timer).not_to_have_text(waited or "")
    async with pool.acquire() as conn:
        logged = await conn.fetchrow("SELECT username, resident_id, via FROM resident_access_log")
    assert logged is not None
    assert dict(logged.items()) == {"username": "wangfang", "resident_id": caller, "via": "call"}


async def test_an_sos_alarm_is_flagged_and_acknowledged_and_dispatched(
    console: Console, pool: asyncpg.Pool
) -> None:
    await add_user(pool, "wangfang", Role.OPERATOR)
    async with pool.acquire() as conn:
        integration, secret = await add_integration(conn, "hx-cloud", SECRET_KEY)
        resident, _ = await unit(conn, "AB0001", cloud_id="hx-0001")
        district = await conn.fetchval(
            """SELECT s.district_id FROM residents r JOIN communities c ON c.id = r.community_id
               JOIN streets s ON s.id = c.street_id WHERE r.id = $1""",
            resident,
        )
        await factories.team(conn, code="T1", district_ids=[district], lat=40.85, lon=111.70)
    page = await console.logged_in("wangfang")
    await live(page)

    async with aiohttp.ClientSession() as http:
        status, _ = await post_signed(
            http,
            console.url + "/api/v1/alarms",
            integration.key,
            secret,
            {
                "event_id": "evt-1",
                "device_id": "hx-0001",
                "kind": "sos",
                "time": dt.datetime.now(dt.UTC).isoformat(),
            },
        )
    assert status == 202
    alert = page.locator("#alerts .alert").first
    # red, and flashing because it is new
    await expect(alert).to_have_class(re.compile(r"\bstate-raised\b.*\bflash\b"), timeout=10_000)
    await expect(alert).to_contain_text("紧急呼救")
    assert await alert.evaluate("node => getComputedStyle(node).borderLeftColor") == "rgb(198, 40, 40)"
    # its timer runs against the first escalation deadline (30 s to acknowledge)
    await expect(alert.locator(".timer")).to_contain_text("距升级")

    await page.keyboard.press("a")
    await expect(alert).to_contain_text("已接警")
    await alert.click()
    await expect(page.locator("#alert-title")).to_contain_text("已接警")
    await expect(page.locator("#drawer")).to_contain_text("应急服务队T1")
    await page.keyboard.press("d")
    await expect(page.locator("#alert-state")).to_have_text("已派队")
    await expect(alert).to_contain_text("应急服务队T1")
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT state, acknowledged_by FROM alerts")
    assert row is not None
    assert (row["state"], row["acknowledged_by"]) == ("team_dispatched", "user:wangfang")


async def test_an_order_from_the_card_follows_the_providers_sms(console: Console, pool: asyncpg.Pool) -> None:
    await add_user(pool, "wangfang", Role.OPERATOR)
    async with pool.acquire() as conn:
        await order_rows.catalogue(conn)
        district, community = await factories.community(conn)
        resident = await factories.resident(conn, community_id=community, name="张玉梅")
        provider = await order_rows.provider(
            conn, name="暖心家政", sms="+8613500001111", districts=(district,)
        )
        bot = await create_user(conn, "sms-bot", Role.OPERATOR)
        token = await issue_token(conn, bot.id)
    page = await console.logged_in("wangfang")
    await live(page)
    await page.evaluate(f"window.CARELINE.floor.openCard({resident}, 'card')")
    form = page.locator("#order-form")
    await form.locator("select[name=item_code]").select_option("bath")
    await form.locator("input[name=notes]").fill("周三上午方便")
    await form.locator("button[type=submit]").click()

    created = page.locator("#order-created")
    await expect(created).to_contain_text("已派单")
    order_id = int(await created.get_attribute("data-order-id") or 0)
    candidates = page.locator(".candidates tr").first
    await expect(candidates).to_contain_text("暖心家政")
    await expect(candidates.locator(".reasons")).not_to_be_empty()
    seeking = page.locator(f"#orders-seeking [data-order-id='{order_id}']")
    await expect(seeking).to_contain_text("已派单")

    async with pool.acquire() as conn:
        code = await conn.fetchval(
            "SELECT code FROM sms_jobs WHERE subject_type = 'order' AND subject_id = $1 AND party_id = $2",
            order_id,
            provider,
        )
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.post(
            console.url + "/api/v1/sms/outbox/reply", json={"from": "13500001111", "body": f"1 {code}"}
        ) as response,
    ):
        assert response.status == 201, await response.text()
    accepted = page.locator(f"#orders-accepted [data-order-id='{order_id}']")
    await expect(accepted).to_contain_text("已接单")
    await expect(accepted).to_contain_text("暖心家政")
    await expect(seeking).to_have_count(0)


async def test_family_call_120_hand_off_and_resolve_from_the_alert(
    console: Console, pool: asyncpg.Pool, peer: AmiPeer
) -> None:
    await add_user(pool, "wangfang", Role.OPERATOR)
    async with pool.acquire() as conn:
        _, community = await factories.community(conn)
        resident = await factories.resident(
            conn, community_id=community, name="赵玉兰", contacts=[("赵明", "+8613922223333")]
        )
    page = await console.logged_in("wangfang")
    await live(page)
    await peer.wait(lambda: peer.logins > 0)
    token = await page.get_attribute('meta[name="csrf-token"]', "content")
    raised = await page.request.post(
        console.url + "/api/v1/alerts",
        data={"resident_id": resident, "kind": "fall"},
        headers={"X-CSRF-Token": token or ""},
    )
    assert raised.status == 201
    alert = page.locator("#alerts .alert").first
    await alert.click()
    await page.fill("#my-extension", "8001")
    await page.locator("#card-contacts .call-contact").first.click()
    await expect(page.locator(".toast").last).to_have_text("已发起呼叫")
    await peer.wait(lambda: any(a.get("Action") == "Originate" for a in peer.received))
    originate = next(a for a in peer.received if a.get("Action") == "Originate")
    assert "8001" in originate["Channel"]  # the operator's phone rings first
    async with pool.acquire() as conn:
        attempt = await conn.fetchrow("SELECT purpose, target, operator FROM call_attempts")
    assert attempt is not None
    assert dict(attempt.items()) == {"purpose": "family", "target": "+8613922223333", "operator": "8001"}

    await page.locator("#alert-title").click()  # focus off the extension field: keys act on the alert
    await expect(page.locator("#act-handoff")).to_have_count(0)  # not before someone has it
    await page.keyboard.press("a")
    await expect(page.locator("#alert-state")).to_have_text("已接警")
    await page.keyboard.press("h")
    await expect(page.locator("#drawer")).to_contain_text("alert.handoff_120")
    await expect(page.locator("#act-handoff")).to_have_count(0)
    await page.select_option("#resolve-outcome", "hospital")
    await page.click("#act-resolve")
    await expect(page.locator("#alert-state")).to_have_text("已结案")
    await expect(page.locator("#alerts .alert")).to_have_count(0)
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT state, outcome, handoff_120_at FROM alerts")
    assert row is not None
    assert (row["state"], row["outcome"]) == ("resolved", "hospital")
    assert row["handoff_120_at"] is not None


async def test_re_offer_and_cancel_an_order(console: Console, pool: asyncpg.Pool) -> None:
    await add_user(pool, "wangfang", Role.OPERATOR)
    async with pool.acquire() as conn:
        await order_rows.catalogue(conn)
        district, community = await factories.community(conn)
        resident = await factories.resident(conn, community_id=community, name="孙桂芝")
        await order_rows.provider(conn, name="暖心家政", districts=(district,), rating=5.0)
        await order_rows.provider(conn, name="安康护理", districts=(district,), rating=2.0)
    page = await console.logged_in("wangfang")
    await live(page)
    token = await page.get_attribute('meta[name="csrf-token"]', "content")
    start = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    created = await page.request.post(
        console.url + "/api/v1/orders",
        data={
            "resident_id": resident,
            "item_code": "clean",
            "window_start": start.isoformat(),
            "window_end": (start + dt.timedelta(hours=2)).isoformat(),
        },
        headers={"X-CSRF-Token": token or ""},
    )
    assert created.status == 201
    first = (await created.json())["offers"][0]["provider_name"]
    order = page.locator("#orders-seeking .order").first
    await order.click()
    offers = page.locator("#order-offers")
    await expect(offers).to_contain_text(first)
    await page.click("#act-reoffer")
    await expect(offers.locator("tr")).to_have_count(2)
    second = "安康护理" if first == "暖心家政" else "暖心家政"
    await expect(offers).to_contain_text(second)

    await page.click("#act-order-cancel")  # no reason: refused on the page
    await expect(page.locator(".toast").last).to_have_text("请先填写原因")
    await page.fill("#order-reason", "老人家属已自行安排")
    await page.click("#act-order-cancel")
    await expect(page.locator("#order-state")).to_have_text("已取消")
    await expect(page.locator("#orders-seeking .order")).to_have_count(0)
