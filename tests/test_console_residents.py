"""The residents pages in a real Chromium: search by name and phone, the form's messages next to the
field with nothing saved, a good record saved, and a name that looks like a script shown as text."""

from __future__ import annotations

import asyncpg
from playwright.async_api import expect

from dispatch.users import Role
from tests import factories
from tests.browser import Console, add_user

GOOD_ID = factories.id_number(seq=771)


async def test_search_finds_a_chinese_name_and_a_phone(console: Console, pool: asyncpg.Pool) -> None:
    await add_user(pool, "wangfang", Role.OPERATOR)
    async with pool.acquire() as conn:
        _, community = await factories.community(conn, name="海东路社区")
        wang = await factories.resident(conn, community_id=community, name="王秀兰", phone="+8613800138000")
        li = await factories.resident(conn, community_id=community, name="李桂兰", phone="+8613900139000")
    page = await console.logged_in("wangfang")
    await page.click("a[href='/console/residents']")
    await page.fill("#search-q", "秀兰")
    await page.click("#search-submit")
    rows = page.locator("#residents tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-resident-id", str(wang))
    await expect(rows.first).to_contain_text("海东路社区")

    # a phone as people write it, with spaces
    await page.fill("#search-q", "")
    await page.fill("#search-phone", "139 0013 9000")
    await page.click("#search-submit")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-resident-id", str(li))
    await expect(rows.first).to_contain_text("李桂兰")

    await page.fill("#search-phone", "12")
    await page.click("#search-submit")
    await expect(page.locator("#phone-error")).to_contain_text("不是")

    # the resident's page is written to the access log
    await page.goto(console.url + f"/console/residents/{li}")
    await expect(page.locator("#resident-name")).to_have_text("李桂兰")
    async with pool.acquire() as conn:
        logged = await conn.fetchrow("SELECT username, resident_id, via FROM resident_access_log")
    assert logged is not None
    assert dict(logged.items()) == {"username": "wangfang", "resident_id": li, "via": "page"}


async def test_a_bad_phone_is_marked_next_to_its_box_and_nothing_is_saved(
    console: Console, pool: asyncpg.Pool
) -> None:
    await add_user(pool, "boss", Role.ADMIN)
    async with pool.acquire() as conn:
        _, community = await factories.community(conn, name="海东路社区")
    page = await console.logged_in("boss")
    await page.goto(console.url + "/console/residents")
    await page.click("#new-resident")
    await page.fill("#f-id_number", GOOD_ID)
    await page.fill("#f-name", "赵桂芝")
    await page.fill("#f-mobile", "1380013")
    await page.select_option("#f-community_id", str(community))
    await page.fill("#f-contact1_name", "赵强")
    await page.fill("#f-contact1_phone", "13911112222")
    await page.click("#resident-save")

    error = page.locator("#e-mobile")
    await expect(error).to_contain_text("不是有效的电话号码")
    # next to its box, which is marked, and the other boxes keep what was typed
    assert await page.locator("#f-mobile").get_attribute("aria-invalid") == "true"
    assert await error.evaluate("node => node.parentElement.contains(document.getElementById('f-mobile'))")
    assert await page.input_value("#f-name") == "赵桂芝"
    assert await page.locator(".field-error").count() == 1
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM residents") == 0

    # a community that is gone by the time the form is sent: refused by the database, marked at its box
    await page.fill("#f-mobile", "138 0013 8000")
    await page.evaluate(
        """() => { const box = document.getElementById('f-community_id');
                   box.add(new Option('gone', '999999')); box.value = '999999'; }"""
    )
    await page.click("#resident-save")
    await expect(page.locator("#e-community_id")).to_have_text("所选项目不存在")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM residents") == 0

    await page.select_option("#f-community_id", str(community))
    await page.click("#resident-save")
    await expect(page.locator("#saved")).to_be_visible()
    await expect(page.locator("#resident-name")).to_have_text("赵桂芝")
    await expect(page.locator("#resident-contacts")).to_contain_text("赵强")
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT r.name, r.community_id, p.e164 FROM residents r
               JOIN resident_phones p ON p.resident_id = r.id"""
        )
    assert row is not None
    assert dict(row.items()) == {"name": "赵桂芝", "community_id": community, "e164": "+8613800138000"}

    # editing: a bad contact phone is refused at its box, a good change saved
    await page.click("#edit-resident")
    assert await page.input_value("#f-mobile") == "13800138000"
    await page.fill("#f-contact1_phone", "x")
    await page.click("#resident-save")
    await expect(page.locator("#e-contact1_phone")).to_be_visible()
    await page.fill("#f-contact1_phone", "13911113333")
    await page.fill("#f-medication", "硝酸甘油")
    await page.click("#resident-save")
    await expect(page.locator("#saved")).to_be_visible()
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT medication FROM residents") == "硝酸甘油"
        assert await conn.fetchval("SELECT phone_e164 FROM emergency_contacts") == "+8613911113333"

    # the same ID number again is refused, the record untouched
    await page.goto(console.url + "/console/residents/new")
    await page.fill("#f-id_number", GOOD_ID)
    await page.fill("#f-name", "别人")
    await page.click("#resident-save")
    await expect(page.locator("#e-id_number")).to_contain_text("已登记")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT name FROM residents") == "赵桂芝"


async def test_a_script_name_is_text_and_operators_cannot_edit(console: Console, pool: asyncpg.Pool) -> None:
    name = "<script>alert(1)</script>"
    await add_user(pool, "wangfang", Role.OPERATOR)
    async with pool.acquire() as conn:
        _, community = await factories.community(conn)
        resident = await factories.resident(conn, community_id=community, name=name)
    page = await console.logged_in("wangfang")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await page.goto(console.url + "/console/residents?q=script")
    link = page.locator(f"#residents tr[data-resident-id='{resident}'] a")
    await expect(link).to_have_text(name)
    await link.click()
    await expect(page.locator("#resident-name")).to_have_text(name)
    assert dialogs == []
    assert await page.locator("#resident script").count() == 0

    # creating and editing are an administrator's
    assert await page.locator("#edit-resident").count() == 0
    for path in ("/console/residents/new", f"/console/residents/{resident}/edit"):
        response = await page.goto(console.url + path)
        assert response is not None
        assert response.status == 403
