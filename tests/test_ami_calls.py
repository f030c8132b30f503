"""Recorded calls played by a real TCP AMI peer end as the right call rows, events and alerts.

Each test replays a recording from shared/fixtures/ami all at once. "Stamped" replays
add Asterisk's `Timestamp` header from the recording's timing (what a manager with
`timestampevents = yes` sends), so the times in the row are the recorded ones.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dispatch.database import Conn
from dispatch.events import DomainEvent
from dispatch.runtime import Runtime
from telephony.simulator import AmiPeer, replay
from tests import factories
from tests.ami_peer import SECRET, USERNAME, ManualTime, asterisk_config, drained, recording, serving, up

MOBILE = "+8613800138000"
LANDLINE = "+864716912345"
UNIT_LINE = "+8613900139000"


@pytest.fixture
async def peer() -> AsyncIterator[AmiPeer]:
    peer = AmiPeer(username=USERNAME, secret=SECRET)
    await peer.start()
    yield peer
    await peer.stop()


async def registry(conn: Conn) -> dict[str, int]:
    """Residents whose phones call in the recordings, and the in-home unit GW-0001."""
    _, community = await factories.community(conn)
    mobile = await factories.resident(conn, community_id=community, name="王秀英", phone=MOBILE)
    landline = await factories.resident(conn, community_id=community, name="李桂兰", phone=LANDLINE)
    unit_owner = await factories.resident(conn, community_id=community, name="张玉梅")
    device = await conn.fetchval(
        """INSERT INTO devices (serial, kind, resident_id, caller_e164)
           VALUES ('GW-0001', 'home_unit', $1, $2) RETURNING id""",
        unit_owner,
        UNIT_LINE,
    )
    return {"mobile": mobile, "landline": landline, "unit_owner": unit_owner, "device": int(device)}


class Events:
    """What the bus carried, in order."""

    def __init__(self, runtime: Runtime) -> None:
        self.seen: list[DomainEvent] = []
        self._tick = asyncio.Event()
        self.subscription = runtime.bus.subscribe("test", self._listen, size=10_000, lossless=True)

    async def _listen(self, event: DomainEvent) -> None:
        self.seen.append(event)
        self._tick.set()

    async def until(self, kind: str, count: int = 1) -> list[DomainEvent]:
        async with asyncio.timeout(10):
            while len(self.of(kind)) < count:
                self._tick.clear()
                await self._tick.wait()
        return self.of(kind)

    def of(self, kind: str) -> list[DomainEvent]:
        return [e for e in self.seen if e.kind == kind]


async def one_call(conn: Conn) -> dict[str, Any]:
    rows = await conn.fetch("SELECT * FROM calls")
    assert len(rows) == 1, rows
    return dict(rows[0].items())


async def play(runtime: Runtime, peer: AmiPeer, name: str, *, stamped: bool) -> None:
    peer.play(replay(recording(name), stamped=stamped))
    async with serving(runtime, asterisk_config(peer.port), ManualTime()) as server:
        await up(server)
        await drained(peer, server)


async def test_answered_queue_call_from_a_resident(runtime: Runtime, peer: AmiPeer) -> None:
    async with runtime.pool.acquire() as conn:
        ids = await registry(conn)
    events = Events(runtime)
    await play(runtime, peer, "01-inbound-queue-answered", stamped=True)
    async with runtime.pool.acquire() as conn:
        call = await one_call(conn)
    assert call["direction"] == "inbound"
    assert call["caller_number"] == MOBILE
    assert call["did"] == "12349"
    assert call["queue"] == "hotline"
    assert call["operator"] == "8001"
    assert call["disposition"] == "answered"
    assert call["hangup_cause"] == 16
    assert (call["wait_seconds"], call["talk_seconds"]) == (3, 16)
    assert call["party"] == "resident"
    assert call["resident_id"] == ids["mobile"]
    assert call["emergency"] is False
    assert call["alert_id"] is None
    # the recorded moments: connect + 0.5 s rings, + 4.0 s answered, + 20.5 s hung up
    connected = dt.datetime.fromtimestamp(recording("01-inbound-queue-answered").connected_epoch, dt.UTC)
    assert abs((call["arrived_at"] - connected).total_seconds() - 0.501) < 0.01
    assert abs((call["answered_at"] - connected).total_seconds() - 4.006) < 0.01
    assert abs((call["ended_at"] - connected).total_seconds() - 20.504) < 0.01

    ringing = (await events.until("call.ringing"))[0]
    assert ringing.data["resident_id"] == ids["mobile"]
    assert ringing.data["party"] == "resident"
    from_resident = (await events.until("call.from_resident"))[0]
    assert from_resident.data == {"call_id": call["id"], "server": "pbx1", "resident_id": ids["mobile"]}
    await events.until("call.ended")
    kinds = [e.kind for e in events.seen if e.kind.startswith("call.")]
    assert kinds == ["call.ringing", "call.from_resident", "call.answered", "call.ended"]
    await events.subscription.close()
