"""`careline simulate pbx` as a newcomer runs it: a real process that Careline connects to."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator

import pytest

from dispatch.events import DomainEvent
from dispatch.runtime import Runtime
from tests.ami_peer import FIXTURES, ManualTime, asterisk_config, serving, up
from tests.helpers import free_port

CARELINE = [sys.executable, "-m", "dispatch.cli"]


@pytest.fixture
async def pbx(request: pytest.FixtureRequest, db_dsn: str) -> AsyncIterator[int]:
    """The simulator as a process, with the test's arguments (indirect parametrisation)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARELINE_")}
    env |= {"CARELINE_AMI_SECRET": "hotline-secret", "CARELINE_DATABASE_URL": db_dsn}
    args: list[str] = request.param
    proc = await asyncio.create_subprocess_exec(
        *CARELINE,
        "simulate",
        "pbx",
        "--port",
        str(port),
        "--username",
        "hotline",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            line = await proc.stdout.readline()
        assert b"listening as Asterisk's manager" in line, line
        yield port
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
        assert b"Traceback" not in stderr, stderr.decode()


async def calls_ended(runtime: Runtime, count: int) -> list[str]:
    """The dispositions of the first `count` calls to end, as the bus announces them."""
    ended: list[str] = []
    done = asyncio.Event()

    async def listen(event: DomainEvent) -> None:
        ended.append(event.data["disposition"])
        if len(ended) >= count:
            done.set()

    subscription = runtime.bus.subscribe("test", listen, prefix="call.ended", lossless=True)
    try:
        async with asyncio.timeout(30):
            await done.wait()
    finally:
        await subscription.close()
    return ended


@pytest.mark.parametrize(
    "pbx", [["--replay", str(FIXTURES / "01-inbound-queue-answered"), "--speed", "0"]], indirect=True
)
async def test_simulator_replays_a_recording_to_careline(runtime: Runtime, pbx: int) -> None:
    ended = asyncio.create_task(calls_ended(runtime, 1))
    async with serving(runtime, asterisk_config(pbx), ManualTime()) as server:
        await up(server)
        assert await ended == ["answered"]


@pytest.mark.parametrize("pbx", [["--calls", "3", "--rate", "6000", "--speed", "0"]], indirect=True)
async def test_simulator_makes_up_calls_at_a_rate(runtime: Runtime, pbx: int) -> None:
    ended = asyncio.create_task(calls_ended(runtime, 3))
    async with serving(runtime, asterisk_config(pbx), ManualTime()) as server:
        await up(server)
        dispositions = await ended
    assert len(dispositions) == 3
    assert set(dispositions) <= {"answered", "abandoned"}
