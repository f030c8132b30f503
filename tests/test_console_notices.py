"""Notices on the floor in a real Chromium: one waiting when the page opens is on it, a critical one
raised while it is open appears at once in red without touching what the operator is typing, its
subject opens the alert, and an operator acknowledges it off the floor."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import asyncpg
from playwright.async_api import Page, expect

from dispatch.alerts import AlertKind, AlertSource, insert_or_join_alert
from dispatch.notices import Severity, raise_notice
from dispatch.service import Service
from dispatch.users import Role
from tests import factories
from tests.browser import Console, add_user

SHANGHAI = ZoneInfo("Asia/Shanghai")
CALL_BACK = (
    "警情 {id} 关闭 12 秒后设备再次报警，请立即回拨确认。"
    " / Alert {id}: the device alarmed again 12 s after it was closed; call back now."
)


async def live(page: Page) -> None:
    """The page's WebSocket is subscribed: events from now on reach it."""
    await expect(page.locator("#live-status")).to_have_text("● 实时", timeout=10_000)


async def test_a_critical_notice_appears_red_and_is_acknowledged(
    console: Console, service: Service, pool: asyncpg.Pool
) -> None:
    assert service.runtime is not None
    await add_user(pool, "wangfang", Role.OPERATOR)
    async with pool.acquire() as conn, conn.transaction():
        _, community = await factories.community(conn)
        resident = await factories.resident(conn, community_id=community, name="刘淑珍")
        device = await factories.device(conn, resident_id=resident)
        raised = await insert_or_join_alert(
            conn,
            source=AlertSource.OPERATOR,
            kind=AlertKind.SOS,
            resident_id=resident,
            device_id=None,
            context={},
            actor="user:wangfang",
            at=dt.datetime.now(dt.UTC),
        )
        # Waiting before the page opens, and never published: only the snapshot can show it.
        silent = await raise_notice(
            conn,
            kind="device.silent",
            severity=Severity.WARNING,
            text="设备 AB0001 已超过两个心跳周期未上报 / Device AB0001 missed two heartbeats",
            subject_type="device",
            subject_id=device,
        )
    alert = raised.alert.id

    page = await console.logged_in("wangfang")
    await live(page)
    waiting = page.locator(f"#notices [data-notice-id='{silent.subject_id}']")
    await expect(waiting).to_contain_text("设备 AB0001 已超过两个心跳周期未上报")
    await expect(waiting).to_have_class(re.compile(r"\bseverity-warning\b"))
    await expect(waiting.locator(".subject")).to_have_text(f"设备 #{device}")
    await expect(waiting.locator("button.subject")).to_have_count(0)  # the floor has no device panel
    await expect(page.locator("#notices-count")).to_have_text("1")

    # The operator is half-way through a reason on the alert when the notice comes in.
    await page.locator(f"#alerts [data-alert-id='{alert}']").click()
    await page.fill("#alert-reason", "家属说老人已去医院")

    async with pool.acquire() as conn, conn.transaction():
        event = await raise_notice(
            conn,
            kind="alarm.call_back",
            severity=Severity.CRITICAL,
            text=CALL_BACK.format(id=alert),
            subject_type="alert",
            subject_id=alert,
        )
        created = await conn.fetchval("SELECT created_at FROM notices WHERE id = $1", event.subject_id)
    await service.runtime.bus.publish(event)

    critical = page.locator(f"#notices [data-notice-id='{event.subject_id}']")
    await expect(critical).to_contain_text(f"警情 {alert} 关闭 12 秒后设备再次报警", timeout=10_000)
    await expect(critical).to_have_class(re.compile(r"\bseverity-critical\b"))
    assert await critical.evaluate("node => getComputedStyle(node).borderLeftColor") == "rgb(198, 40, 40)"
    assert await critical.evaluate("node => getComputedStyle(node).backgroundColor") == "rgb(253, 236, 234)"
    await expect(page.locator("#notices .notice").first).to_have_attribute(
        "data-notice-id", str(event.subject_id)
    )  # critical before the older warning
    await expect(critical.locator(".when")).to_have_text(created.astimezone(SHANGHAI).strftime("%m/%d %H:%M"))
    await expect(page.locator("#notices-count")).to_have_text("2")
    assert await page.input_value("#alert-reason") == "家属说老人已去医院"

    # Its subject opens the alert, as the alerts board does.
    await page.click("#drawer-close")
    await critical.locator("button.subject").click()
    await expect(page.locator("#alert-title")).to_contain_text(f"警情 #{alert}")
    await expect(page.locator("#drawer-body")).not_to_contain_text("null")  # an alert with no deadline left
    await page.click("#drawer-close")

    await critical.locator(".acknowledge-notice").click()
    await expect(critical).to_have_count(0)
    await expect(waiting).to_be_visible()
    await expect(page.locator("#notices-count")).to_have_text("1")
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT u.username, n.acknowledged_at FROM notices n JOIN users u ON u.id = n.acknowledged_by
               WHERE n.id = $1""",
            event.subject_id,
        )
        still_open = await conn.fetchval(
            "SELECT acknowledged_at IS NULL FROM notices WHERE id = $1", silent.subject_id
        )
    assert row is not None
    assert row["username"] == "wangfang"
    assert row["acknowledged_at"] is not None
    assert still_open
    # A fresh read of the floor agrees: the acknowledged notice is gone for good.
    await page.reload()
    await live(page)
    await expect(page.locator(f"#notices [data-notice-id='{silent.subject_id}']")).to_be_visible()
    await expect(page.locator(f"#notices [data-notice-id='{event.subject_id}']")).to_have_count(0)
