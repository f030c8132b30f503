"""The console's accounts in a real Chromium: log in and out, the rate limit, CSRF, roles,
the access log, and a resident's name that looks like a script shown as text."""

from __future__ import annotations

import asyncpg

from dispatch.users import Role
from tests import factories
from tests.browser import PASSWORD, Console, add_user


async def test_log_in_and_out(console: Console, pool: asyncpg.Pool) -> None:
    await add_user(pool, "wangfang", Role.OPERATOR, "王芳")
    page = await console.logged_in("wangfang")
    # zh-CN by default, the user's name and role in the header
    assert await page.text_content("#who") == "王芳 · 话务员"
    assert await page.text_content("#calls-h") is not None
    cookie = next(c for c in await page.context.cookies() if c["name"] == "careline_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["secure"] is False  # plain http in the test; https turns it on
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM console_sessions WHERE ended_at IS NULL") == 1

    await page.click("#logout")
    await page.wait_for_url(console.url + "/console/login")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM console_sessions WHERE ended_at IS NULL") == 0
    # the old cookie opens nothing any more
    await page.context.add_cookies([{"name": cookie["name"], "value": cookie["value"], "url": console.url}])
    await page.goto(console.url + "/console/")
    assert page.url.startswith(console.url + "/console/login")


async def test_english_switch_and_bad_password(console: Console, pool: asyncpg.Pool) -> None:
    await add_user(pool, "lina", Role.SUPERVISOR, "李娜")
    page = await console.new_page()
    await page.goto(console.url + "/console/login")
    await page.click("#lang-switch")
    await page.wait_for_selector("text=Operator console")
    await page.fill("#username", "lina")
    await page.fill("#password", "wrong")
    await page.click("#login-submit")
    assert await page.text_content("#login-error") == "Wrong user name or password."


async def test_bad_passwords_are_rate_limited(console: Console, pool: asyncpg.Pool) -> None:
    await add_user(pool, "zhaolei", Role.OPERATOR)
    page = await console.new_page()
    await page.goto(console.url + "/console/login")
    for _ in range(5):
        await page.fill("#username", "zhaolei")
        await page.fill("#password", "not the password")
        await page.click("#login-submit")
        assert await page.text_content("#login-error") == "用户名或密码错误。"
    # the sixth try is refused even with the right password, without it being checked
    await page.fill("#username", "zhaolei")
    await page.fill("#password", PASSWORD)
    response = await page.request.post(
        console.url + "/console/login",
        form={
            "username": "zhaolei",
            "password": PASSWORD,
            "csrf_token": await page.input_value("input[name=csrf_token]"),
        },
        max_redirects=0,
    )
    assert response.status == 429
    await page.click("#login-submit")
    assert "登录失败次数过多" in (await page.text_content("#login-error") or "")
    assert page.url.startswith(console.url + "/console/login")
    async with pool.acquire() as conn:
        # kept as rows, so a restart does not reset the count
        assert await conn.fetchval("SELECT count(*) FROM login_failures WHERE username = 'zhaolei'") == 7


async def test_state_changes_without_the_csrf_token_are_refused(console: Console, pool: asyncpg.Pool) -> None:
    await add_user(pool, "wangfang", Role.OPERATOR)
    async with pool.acquire() as conn:
        _, community = await factories.community(conn)
        resident = await factories.resident(conn, community_id=community)
    page = await console.logged_in("wangfang")
    token = await page.get_attribute('meta[name="csrf-token"]', "content")
    assert token
    body = {"resident_id": resident, "kind": "sos", "note": "来电"}
    # the session's cookie alone is not enough to change anything...
    refused = await page.request.post(console.url + "/api/v1/alerts", data=body)
    assert refused.status == 403
    assert (await refused.json())["error"]["code"] == "csrf"
    wrong = await page.request.post(
        console.url + "/api/v1/alerts", data=body, headers={"X-CSRF-Token": "x" * 43}
    )
    assert wrong.status == 403
    logout = await page.request.post(console.url + "/console/logout", form={}, max_redirects=0)
    assert logout.status == 403
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM alerts") == 0
    # ...with the page's token it is
    accepted = await page.request.post(
        console.url + "/api/v1/alerts", data=body, headers={"X-CSRF-Token": token}
    )
    assert accepted.status == 201
    # and the log-in form itself carries a token bound to a cookie (double submit)
    other = await console.new_page()
    forged = await other.request.post(
        console.url + "/console/login", form={"username": "wangfang", "password": PASSWORD}, max_redirects=0
    )
    assert forged.status == 403


async def test_an_operator_cannot_reach_admin_pages(console: Console, pool: asyncpg.Pool) -> None:
    await add_user(pool, "wangfang", Role.OPERATOR)
    await add_user(pool, "boss", Role.ADMIN, "管理员甲")
    async with pool.acquire() as conn:
        _, community = await factories.community(conn)
        resident = await factories.resident(conn, community_id=community, name="刘淑珍")
    operator = await console.logged_in("wangfang")
    assert await operator.locator("a[href='/console/admin/access-log']").count() == 0
    response = await operator.goto(console.url + "/console/admin/access-log")
    assert response is not None
    assert response.status == 403
    assert await operator.text_content("#error-title") == "无权访问"
    # the operator opens a card; the admin reads who did
    await operator.goto(console.url + "/console/")
    await operator.evaluate(f"window.CARELINE.floor.openCard({resident}, 'card')")
    await operator.wait_for_selector("#resident-card")

    admin = await console.logged_in("boss")
    await admin.click("a[href='/console/admin/access-log']")
    row = admin.locator("#access-log tbody tr").first
    assert "wangfang" in await row.inner_text()
    assert "刘淑珍" in await row.inner_text()
    assert "档案卡" in await row.inner_text()


async def test_a_name_that_looks_like_a_script_is_shown_as_text(console: Console, pool: asyncpg.Pool) -> None:
    name = "<script>alert(1)</script>"
    await add_user(pool, "wangfang", Role.OPERATOR)
    async with pool.acquire() as conn:
        _, community = await factories.community(conn)
        resident = await factories.resident(conn, community_id=community, name=name)
    page = await console.logged_in("wangfang")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    token = await page.get_attribute('meta[name="csrf-token"]', "content")
    assert token
    raised = await page.request.post(
        console.url + "/api/v1/alerts",
        data={"resident_id": resident, "kind": "sos"},
        headers={"X-CSRF-Token": token},
    )
    assert raised.status == 201
    board_name = page.locator("#alerts .alert .name")
    await board_name.wait_for()
    assert await board_name.text_content() == name
    await board_name.click()
    await page.wait_for_selector("#card-name")
    assert (await page.text_content("#card-name") or "").startswith(name)
    assert dialogs == []
