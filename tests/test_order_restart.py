"""kill -9 with offers pending, start again: every offer deadline that passed fires once, and the
ladder carries on from the rows to `unfilled` as if nothing had happened."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import sys

import aiohttp
import asyncpg

from dispatch.users import Role, create_user, issue_token
from tests import factories
from tests.helpers import free_port
from tests.order_rows import HOME, catalogue, provider

PROVIDERS = 2


async def start(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatch.cli",
        "serve",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def healthy(url: str, proc: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            assert proc.returncode is None, "careline exited"
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with http.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise AssertionError("careline did not become healthy")


async def test_kill_9_with_offers_pending_loses_none_and_fires_none_twice(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    async with pool.acquire() as conn:
        user = await create_user(conn, "op", Role.OPERATOR)
        token = await issue_token(conn, user.id)
        await catalogue(conn)
        district, community = await factories.community(conn, lat=HOME[0], lon=HOME[1])
        resident = await factories.resident(conn, community_id=community, lat=HOME[0], lon=HOME[1])
        for i in range(PROVIDERS):
            await provider(conn, name=f"加盟商{i}", districts=(district,))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARELINE_")}
    env |= {
        "CARELINE_DATABASE_URL": db_dsn,
        "CARELINE_SERVER_PORT": str(port),
        # short offers so the test waits seconds, not minutes
        "CARELINE_ORDERS_OFFER_SECONDS": "2",
    }
    first = await start(env)
    await healthy(url, first)
    window_start = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        body = {
            "resident_id": resident,
            "item_code": "bath",
            "window_start": window_start.isoformat(),
            "window_end": (window_start + dt.timedelta(hours=1)).isoformat(),
        }
        async with http.post(url + "/api/v1/orders", json=body) as resp:
            assert resp.status == 201
            order_id = (await resp.json())["order"]["id"]
    first.send_signal(signal.SIGKILL)
    await first.wait()
    pending = await pool.fetchval(
        "SELECT count(*) FROM deadlines WHERE kind = 'order.offer_expired' AND fired_at IS NULL"
    )
    assert pending == 1, "the offer's deadline must be a row before the API answered"

    second = await start(env)
    try:
        await healthy(url, second)
        for _ in range(300):
            state = await pool.fetchval("SELECT state FROM service_orders WHERE id = $1", order_id)
            if state == "unfilled":
                break
            await asyncio.sleep(0.1)
        assert state == "unfilled"
        expired = await pool.fetch(
            """SELECT data->>'offer_id' AS offer, count(*) AS n FROM events
               WHERE subject_type = 'order' AND subject_id = $1 AND kind = 'order.offer_expired'
               GROUP BY 1""",
            order_id,
        )
        assert len(expired) == PROVIDERS
        assert {r["n"] for r in expired} == {1}
        assert await pool.fetchval("SELECT count(*) FROM notices WHERE kind = 'order.unfilled'") == 1
        assert await pool.fetchval("SELECT count(*) FROM sms_jobs WHERE open") == 0
    finally:
        second.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(second.communicate(), timeout=60)
    assert second.returncode == 0, stderr.decode()
