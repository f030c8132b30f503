"""Console sessions without a browser: expiry, the Secure flag, the live socket's origin check."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import re

import aiohttp
import asyncpg
import pytest

from dispatch.config import Config
from dispatch.console.sessions import LoginRefused, log_in, session_for_token
from dispatch.runtime import utc_now
from dispatch.service import Service
from dispatch.users import Role
from tests.browser import PASSWORD, add_user

T0 = dt.datetime(2026, 11, 24, 1, 0, tzinfo=dt.UTC)


async def test_a_session_ends_after_its_hours(config: Config, pool: asyncpg.Pool) -> None:
    await add_user(pool, "wangfang", Role.OPERATOR)
    async with pool.acquire() as conn:
        opened = await log_in(
            conn, config.console, "wangfang", PASSWORD, ip="10.0.0.7", user_agent="t", now=T0
        )
        hours = dt.timedelta(hours=config.console.session_hours)
        during = await session_for_token(conn, opened.token, T0 + hours - dt.timedelta(seconds=1))
        assert during is not None
        assert during.user.username == "wangfang"
        assert await session_for_token(conn, opened.token, T0 + hours) is None
        # a deactivated user's session stops at once
        await conn.execute("UPDATE users SET active = false WHERE username = 'wangfang'")
        assert await session_for_token(conn, opened.token, T0) is None


async def test_the_limit_is_per_user_name_and_address(config: Config, pool: asyncpg.Pool) -> None:
    await add_user(pool, "wangfang", Role.OPERATOR)
    allowed = config.console.login_failures_allowed
    async with pool.acquire() as conn:
        for _ in range(allowed):
            with pytest.raises(LoginRefused) as refused:
                await log_in(conn, config.console, "wangfang", "x", ip="10.0.0.7", user_agent="", now=T0)
            assert not refused.value.throttled
        with pytest.raises(LoginRefused) as refused:
            await log_in(conn, config.console, "wangfang", PASSWORD, ip="10.0.0.7", user_agent="", now=T0)
        assert refused.value.throttled
        # another address is not locked out by this one...
        await log_in(conn, config.console, "wangfang", PASSWORD, ip="10.0.0.8", user_agent="", now=T0)
        # ...and the window passes
        later = T0 + dt.timedelta(seconds=config.console.login_window_seconds + 1)
        await log_in(conn, config.console, "wangfang", PASSWORD, ip="10.0.0.7", user_agent="", now=later)


@pytest.fixture
def config(config: Config) -> Config:
    return dataclasses.replace(config, console=dataclasses.replace(config.console, secure_cookies="always"))


def _cookie(response: aiohttp.ClientResponse, name: str) -> str:
    """The Set-Cookie line of `name` (a client jar would not send Secure cookies back over http)."""
    line = next(c for c in response.headers.getall("Set-Cookie") if c.startswith(name + "="))
    return line


async def test_secure_cookies_and_the_sockets_origin(service: Service, pool: asyncpg.Pool) -> None:
    await add_user(pool, "wangfang", Role.OPERATOR)
    url = service.url
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(url + "/console/login") as form:
            csrf_line = _cookie(form, "careline_csrf")
            token = re.search(r'name="csrf_token" value="([^"]+)"', await form.text())
        assert token
        assert "Secure" in csrf_line
        async with http.post(
            url + "/console/login",
            data={"username": "wangfang", "password": PASSWORD, "csrf_token": token.group(1)},
            headers={"Cookie": csrf_line.split(";")[0]},
            allow_redirects=False,
        ) as response:
            assert response.status == 302
            session = _cookie(response, "careline_session")
        for attribute in ("HttpOnly", "Secure", "SameSite=Lax", "Path=/"):
            assert attribute in session
        cookie = {"Cookie": session.split(";")[0]}
        # a page of another site may not open the live socket with our cookie
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url + "/console/live", origin="http://evil.example", headers=cookie)
        assert refused.value.status == 403
        async with http.ws_connect(url + "/console/live", origin=url, headers=cookie) as ws:
            hello = await ws.receive_json(timeout=5)
            assert hello == {"kind": "console.hello"}
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url + "/console/live")
        assert refused.value.status == 401


async def test_stopping_the_service_closes_live_sockets(service: Service, pool: asyncpg.Pool) -> None:
    await add_user(pool, "wangfang", Role.OPERATOR)
    async with pool.acquire() as conn:
        opened = await log_in(
            conn, service.config.console, "wangfang", PASSWORD, ip="127.0.0.1", user_agent="", now=utc_now()
        )
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        ws = await http.ws_connect(
            service.url + "/console/live", headers={"Cookie": f"careline_session={opened.token}"}
        )
        assert await ws.receive_json(timeout=5) == {"kind": "console.hello"}
        async with asyncio.timeout(service.config.server.shutdown_grace_seconds):
            await service.stop()
        closing = await ws.receive(timeout=5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await ws.close()


async def test_a_nul_typed_into_a_resident_form_is_refused_by_its_box(
    service: Service, pool: asyncpg.Pool
) -> None:
    await add_user(pool, "admin1", Role.ADMIN)
    async with pool.acquire() as conn:
        opened = await log_in(
            conn, service.config.console, "admin1", PASSWORD, ip="127.0.0.1", user_agent="", now=utc_now()
        )
    before = await pool.fetchval("SELECT count(*) FROM residents")
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
        http.post(
            service.url + "/console/residents/new",
            data={
                "csrf_token": opened.session.csrf_token,
                "name": "王\x00芳",
                "id_number": "110101194501011234",
            },
            headers={"Cookie": f"careline_session={opened.token}", "Accept-Language": "zh-CN"},
        ) as response,
    ):
        assert response.status == 400
        page = await response.text()
    assert "文字中不能含有空字符" in page
    assert await pool.fetchval("SELECT count(*) FROM residents") == before
