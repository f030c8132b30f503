"""kill -9 with deadlines pending, start again: every deadline that passed fires, exactly once.

The service runs as a real subprocess on this test's database; it is killed
with SIGKILL right after the alerts are raised (their ladders pending) and
started again. The test then waits, polling the database, for the ladder steps
to appear, and checks that none appears twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys

import aiohttp
import asyncpg

from dispatch.users import Role, create_user, issue_token
from tests import factories
from tests.helpers import free_port

ALERTS = 25


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


async def test_kill_9_loses_no_deadline_and_fires_none_twice(pool: asyncpg.Pool, db_dsn: str) -> None:
    async with pool.acquire() as conn:
        user = await create_user(conn, "op", Role.OPERATOR)
        token = await issue_token(conn, user.id)
        district, community = await factories.community(conn)
        residents = [await factories.resident(conn, community_id=community) for _ in range(ALERTS)]
        await factories.team(conn, code="T1", district_ids=[district], lat=40.86, lon=111.71)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARELINE_")}
    env |= {
        "CARELINE_DATABASE_URL": db_dsn,
        "CARELINE_SERVER_PORT": str(port),
        "CARELINE_ALARMS_DC09_PORT": "0",
        # short rungs so the test waits seconds, not minutes
        "CARELINE_ALERTS_ACK_SUPERVISOR_SECONDS": "3",
        "CARELINE_ALERTS_ACK_ALL_OPERATORS_SECONDS": "4",
    }
    first = await start(env)
    await healthy(url, first)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        for resident in residents:
            async with http.post(url + "/api/v1/alerts", json={"resident_id": resident}) as resp:
                assert resp.status == 201
    first.send_signal(signal.SIGKILL)
    await first.wait()
    pending = await pool.fetchval("SELECT count(*) FROM deadlines WHERE fired_at IS NULL")
    assert pending == 2 * ALERTS, "the ladder must be rows before the API answered"

    second = await start(env)
    try:
        await healthy(url, second)
        for _ in range(300):
            fired = await pool.fetchval("SELECT count(*) FROM deadlines WHERE fired_at IS NOT NULL")
            if fired == 2 * ALERTS:
                break
            await asyncio.sleep(0.1)
        assert fired == 2 * ALERTS
        steps = await pool.fetch(
            """SELECT subject_id, data->>'step' AS step, count(*) AS n FROM events
               WHERE kind = 'alert.escalated' GROUP BY 1, 2"""
        )
        assert len(steps) == 2 * ALERTS
        assert {r["n"] for r in steps} == {1}
    finally:
        second.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(second.communicate(), timeout=60)
    assert second.returncode == 0, stderr.decode()
