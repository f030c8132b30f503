"""Recorded calls played by a real TCP AMI peer end as the right call rows, events and alerts.

Each test replays a recording from shared/fixtures/ami all at once. "Stamped" replays
add Asterisk's `Timestamp` header from the recording's timing (what a manager with
`timestampevents = yes` sends), so the times in the row are the recorded ones.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from dispatch.database import Conn
from dispatch.events import DomainEvent
from dispatch.runtime import Runtime
from telephony.simulator import AmiPeer, Send, replay
from tests import factories
from tests.ami_frames import attended_transfer, queue_times_out
from tests.ami_peer import SECRET, USERNAME, ManualTime, asterisk_config, drained, recording, serving, up

MOBILE = "+8613800138000"
LANDLINE = "+864716912345"
UNIT_LINE = "+8613900139000"


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


async def test_abandoned_call_from_a_landline(runtime: Runtime, peer: AmiPeer) -> None:
    async with runtime.pool.acquire() as conn:
        ids = await registry(conn)
    await play(runtime, peer, "02-abandoned-in-queue", stamped=True)
    async with runtime.pool.acquire() as conn:
        call = await one_call(conn)
    # 04716912345 as Asterisk gives it, +864716912345 as the registry keeps it
    assert call["caller_number"] == LANDLINE
    assert call["resident_id"] == ids["landline"]
    assert call["disposition"] == "abandoned"
    assert call["answered_at"] is None
    assert call["operator"] is None
    assert call["wait_seconds"] == 14
    assert call["talk_seconds"] is None
    assert call["hangup_cause"] == 16


async def test_emergency_button_call_raises_one_sos_alert_for_the_unit(
    runtime: Runtime, peer: AmiPeer
) -> None:
    async with runtime.pool.acquire() as conn:
        ids = await registry(conn)
    events = Events(runtime)
    await play(runtime, peer, "03-emergency-button-userevent", stamped=True)
    async with runtime.pool.acquire() as conn:
        call = await one_call(conn)
        alerts = await conn.fetch("SELECT * FROM alerts")
    assert call["did"] == "123491"
    assert call["emergency"] is True
    assert call["disposition"] == "answered"
    assert call["operator"] == "8001"
    assert (call["wait_seconds"], call["talk_seconds"]) == (2, 9)
    assert call["device_id"] == ids["device"]
    assert len(alerts) == 1
    alert = alerts[0]
    assert (alert["kind"], alert["source"], alert["triggers"]) == ("sos", "call", 1)
    assert alert["device_id"] == ids["device"]
    assert alert["resident_id"] == ids["unit_owner"]
    assert alert["context"]["device"] == "GW-0001"
    assert call["alert_id"] == alert["id"]
    assert alert["context_id"] == call["context_id"]
    raised = await events.until("alert.raised")
    ringing = await events.until("call.ringing")
    # the alert is raised in the transaction that first writes the call, before anyone hears it ring
    assert events.seen.index(raised[0]) < events.seen.index(ringing[0])
    await events.subscription.close()


async def test_emergency_call_from_an_unknown_line_still_raises_an_alert(
    runtime: Runtime, peer: AmiPeer
) -> None:
    """Variation of 03: nobody is registered (no resident, no unit GW-0001)."""
    await play(runtime, peer, "03-emergency-button-userevent", stamped=False)
    async with runtime.pool.acquire() as conn:
        call = await one_call(conn)
        alerts = await conn.fetch("SELECT * FROM alerts")
    assert call["party"] == "unknown"
    assert len(alerts) == 1
    assert alerts[0]["resident_id"] is None
    assert alerts[0]["context"]["device"] == "GW-0001"


async def test_replayed_all_at_once_the_queue_figures_still_give_wait_and_talk(
    runtime: Runtime, peer: AmiPeer
) -> None:
    """01 without timestamps and all at once: every event is read in the same instant, so the
    times are that instant; Asterisk's HoldTime and TalkTime still say 3 s and 16 s."""
    await play(runtime, peer, "01-inbound-queue-answered", stamped=False)
    async with runtime.pool.acquire() as conn:
        call = await one_call(conn)
    assert call["disposition"] == "answered"
    assert (call["wait_seconds"], call["talk_seconds"]) == (3, 16)
    assert call["party"] == "unknown"
    assert call["arrived_at"] <= call["answered_at"] <= call["ended_at"]


async def test_two_servers_at_once_keep_their_calls_apart(runtime: Runtime) -> None:
    """Variation: the same recording played by two Asterisks: the same Linkedid on each is two calls."""
    peers = [AmiPeer(username=USERNAME, secret=SECRET) for _ in range(2)]
    for peer in peers:
        await peer.start()
        peer.play(replay(recording("01-inbound-queue-answered")))
    peers[1].play(replay(recording("02-abandoned-in-queue")))
    time = ManualTime()
    try:
        async with (
            serving(runtime, asterisk_config(peers[0].port, "pbx-a"), time) as a,
            serving(runtime, asterisk_config(peers[1].port, "pbx-b"), time, metrics=a.metrics) as b,
        ):
            await up(a)
            await up(b)
            await drained(peers[0], a)
            await drained(peers[1], b)
    finally:
        for peer in peers:
            await peer.stop()
    async with runtime.pool.acquire() as conn:
        rows = await conn.fetch("SELECT server, linkedid, disposition FROM calls ORDER BY server, linkedid")
    assert [tuple(r) for r in rows] == [
        ("pbx-a", "1795393745.0", "answered"),
        ("pbx-b", "1795393745.0", "answered"),
        ("pbx-b", "1795393768.4", "abandoned"),
    ]


async def test_queue_that_times_out_is_written_as_not_answered(runtime: Runtime, peer: AmiPeer) -> None:
    """Variation of 02 (`queue_times_out`): the queue's timeout lets go of the caller, who had not
    given up, and the dialplan hangs up."""
    peer.send(Send(tuple(f for f in queue_times_out(0.0) if f.startswith(b"Event: "))))
    async with serving(runtime, asterisk_config(peer.port), ManualTime()) as server:
        await up(server)
        await drained(peer, server)
    async with runtime.pool.acquire() as conn:
        call = await one_call(conn)
    assert (call["disposition"], call["queue"], call["answered_at"]) == ("no_answer", "hotline", None)
    assert (call["caller_number"], call["wait_seconds"], call["hangup_cause"]) == (LANDLINE, 15, 16)


async def test_attended_transfer_is_written_as_one_call(runtime: Runtime, peer: AmiPeer) -> None:
    """Variation of 01 on PJSIP (`attended_transfer`): Wang Fang consults 8002 from her phone's
    second line and puts the resident through to him; the consultation is no call row of its own."""
    events = Events(runtime)
    frames, _ = attended_transfer("target", "8002")
    peer.send(Send(tuple(f for f in frames if f.startswith(b"Event: "))))
    async with serving(runtime, asterisk_config(peer.port), ManualTime()) as server:
        await up(server)
        await drained(peer, server)
    async with runtime.pool.acquire() as conn:
        call = await one_call(conn)
    assert (call["linkedid"], call["disposition"], call["operator"]) == ("1795393745.0", "answered", "8001")
    assert (call["wait_seconds"], call["talk_seconds"]) == (3, 33)
    await events.until("call.ended")
    kinds = [e.kind for e in events.seen if e.kind.startswith("call.")]
    assert kinds == ["call.ringing", "call.answered", "call.ended"]
    await events.subscription.close()
