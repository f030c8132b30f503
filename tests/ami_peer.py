"""The AMI peer of the telephony tests: the simulator's `AmiPeer`, the recordings, moved time.

The recordings are read from `../shared/fixtures/ami` beside the repository (where
CI puts shared/); a variation is made from a recording in the test that uses it and
says what it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from dispatch.alert_desk import AlertDesk
from dispatch.config import AsteriskConfig
from dispatch.runtime import Runtime
from telephony.call_store import TelephonyMetrics
from telephony.simulator import AmiPeer, Recording
from telephony.switchboard import AsteriskServer

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "ami"
USERNAME = "hotline"
SECRET = "hotline-secret"


@functools.cache
def recording(name: str) -> Recording:
    return Recording.load(FIXTURES / name)


def asterisk_config(port: int, name: str = "pbx1", **overrides: object) -> AsteriskConfig:
    base = AsteriskConfig(
        name=name,
        host="127.0.0.1",
        port=port,
        username=USERNAME,
        secret=SECRET,
        hotline_dids=("12349",),
        emergency_dids=("123491",),
        connect_timeout_seconds=5.0,
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


class ManualTime:
    """The link's `sleep`: every wait is written down; those named in `instant` pass at once, the
    others (the keep-alive, an auth retry) last until the test lets them go with `release`."""

    def __init__(self, instant: tuple[str, ...] = ("reconnect", "database")) -> None:
        self.instant = set(instant)
        self.waits: list[tuple[float, str]] = []
        self._gates: dict[str, asyncio.Event] = {}
        self._tick = asyncio.Event()

    async def sleep(self, seconds: float, why: str) -> None:
        self.waits.append((seconds, why))
        self._tick.set()
        self._tick = asyncio.Event()
        if why in self.instant:
            await asyncio.sleep(0)
            return
        gate = self._gates.setdefault(why, asyncio.Event())
        await gate.wait()
        gate.clear()

    def release(self, why: str) -> None:
        self._gates.setdefault(why, asyncio.Event()).set()

    def count(self, why: str) -> int:
        return sum(1 for _, w in self.waits if w == why)

    async def until(self, condition: Callable[[], bool]) -> None:
        while True:
            tick = self._tick
            if condition():
                return
            await tick.wait()


@contextlib.asynccontextmanager
async def serving(
    runtime: Runtime, config: AsteriskConfig, time: ManualTime, *, metrics: TelephonyMetrics | None = None
) -> AsyncIterator[AsteriskServer]:
    """An AsteriskServer component (link, tracker, recorder) running for the test."""
    server = AsteriskServer(
        runtime, config, AlertDesk(runtime), metrics or TelephonyMetrics(runtime.metrics), sleep=time.sleep
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def up(server: AsteriskServer) -> None:
    async with asyncio.timeout(10):
        await server.link.wait_for(lambda: server.link.up)


async def drained(peer: AmiPeer, server: AsteriskServer) -> None:
    """Everything the peer played has been read, tracked and written.

    A Ping sent after the peer wrote its last frame is answered after those frames, and the
    link reads frames in order: when the Pong is in, the tracker has had all of them.
    """
    async with asyncio.timeout(20):
        await peer.wait(lambda: peer.idle)
        await server.link.request({"Action": "Ping"})
        await server.recorder.settled()
