"""`careline simulate alarms` and `careline integration add`: the simulator against a live service."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import asyncpg
import pytest

from dispatch.config import Config
from dispatch.service import Service
from telephony.alarms.simulator import Plan, demo_devices, simulate
from tests.alarm_helpers import SECRET_KEY, alarm_config, handled, unit


@pytest.fixture
async def live(config: Config) -> AsyncIterator[Service]:
    service = Service(alarm_config(config))
    await service.start()
    yield service
    await service.stop()


async def test_simulated_units_are_acknowledged_over_tcp_udp_and_a_storm(
    live: Service, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        for i in range(20):
            await unit(conn, f"5100{i:02d}", cloud_id=f"sim-{i}")
        accounts = await demo_devices(conn, "tcp", 100)
    assert live.dc09 is not None
    assert live.dc09.port is not None
    plan = Plan(
        "tcp", "sos", count=40, rate=0, storm=False, host="127.0.0.1", port=live.dc09.port, url=live.url
    )
    report = await simulate(plan, accounts)
    assert report.answers == {"ack": 40}
    udp = await simulate(dataclasses.replace(plan, transport="udp", kind="test", count=10), accounts)
    assert udp.answers == {"ack": 10}
    storm = await simulate(dataclasses.replace(plan, storm=True), accounts)
    assert storm.answers == {"ack": 20}
    assert "acknowledged 20" in storm.describe()
    assert await pool.fetchval("SELECT count(*) FROM alarms") == 70
    await handled(live.runtime, live.desk)
    assert await pool.fetchval("SELECT count(*) FROM alerts") == 20


def test_integration_add_prints_key_and_secret_once(db_dsn: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARELINE_")}
    env |= {"CARELINE_DATABASE_URL": db_dsn, "CARELINE_LOGGING_LEVEL": "WARNING"}
    cli = [sys.executable, "-m", "dispatch.cli", "integration", "add", "hx-cloud"]
    refused = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "CARELINE_SECRET_KEY" in refused.stderr
    made = subprocess.run(
        cli, env={**env, "CARELINE_SECRET_KEY": SECRET_KEY}, capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    assert "key: ck_" in made.stdout
    assert "secret (shown once, keep it safe): cs_" in made.stdout
