"""A call from the resident's own phone checks the visit in, a later one checks it out: recording
01 (an inbound hotline call from 13800138000) played by the AMI peer, identified by the real
recorder, its `call.from_resident` used by the evidence component; a restart catches up."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import asyncpg

from dispatch.call_evidence import CallEvidence
from dispatch.config import Config
from dispatch.events import DomainEvent
from dispatch.orders import EvidenceSource, OrderState, visit_evidence
from telephony.call_store import TelephonyMetrics
from telephony.simulator import AmiPeer, Script, replay
from tests import factories
from tests.ami_peer import SECRET, USERNAME, ManualTime, asterisk_config, drained, recording, serving, up
from tests.order_rows import HOME, catalogue, provider
from tests.order_world import Lane, make_lane

PHONE = "+8613800138000"  # the caller of recording 01
PROVIDER_SMS = "+8613500000001"


async def accepted_order(lane: Lane) -> int:
    async with lane.pool.acquire() as conn:
        await catalogue(conn)
        district, community = await factories.community(conn, lat=HOME[0], lon=HOME[1])
        resident = await factories.resident(conn, community_id=community, phone=PHONE)
        near = await provider(conn, name="近邻家政", sms=PROVIDER_SMS, districts=(district,))
    # the window began half an hour ago: the carer is in the home now
    order = await lane.order(resident, start_in=dt.timedelta(minutes=-30))
    await lane.reply(PROVIDER_SMS, f"1 {await lane.code(order.id, near)}")
    return order.id


# when recording 01's call arrived (its manager session began a moment before)
ARRIVED = dt.datetime(2026, 11, 23, 0, 29, 5, 955000, tzinfo=dt.UTC)


def call_of(n: int, hours_later: int = 0) -> Script:
    """Recording 01 as the n-th call of the day, `hours_later` than recorded: its channels' ids
    (and so the call) made new, its events stamped with Asterisk's Timestamp from then."""
    base = recording("01-inbound-queue-answered")
    session = f"EventTV: 2026-11-23T{hours_later:02d}:29:05.454+0000".encode()
    frames = [
        f.replace(b"179539374", f"17953937{n}".encode()).replace(
            b"EventTV: 2026-11-23T00:29:05.454+0000", session
        )
        for f in base.frames
    ]
    return replay(dataclasses.replace(base, frames=tuple(frames), times=base.times), stamped=True)


async def inbound_call(
    lane: Lane, metrics: TelephonyMetrics, n: int, *, listen: bool, hours_later: int = 0
) -> None:
    """A call through the peer and the recorder; waits for the evidence listener if `listen`."""
    evidence = CallEvidence(lane.desk)
    used = asyncio.Event()

    async def after(event: DomainEvent) -> None:
        # the component's own listener, then a signal for the test that it has run
        await evidence.on_event(event)
        used.set()

    subscription = (
        lane.runtime.bus.subscribe("test", after, prefix="call.from_resident", lossless=True)
        if listen
        else None
    )
    peer = AmiPeer(username=USERNAME, secret=SECRET)
    await peer.start()
    try:
        peer.play(call_of(n, hours_later))
        async with serving(lane.runtime, asterisk_config(peer.port), ManualTime(), metrics=metrics) as server:
            await up(server)
            await drained(peer, server)
        if subscription is not None:
            async with asyncio.timeout(10):
                await used.wait()
            await subscription.close()
    finally:
        await peer.stop()


async def test_calls_from_the_residents_phone_check_the_visit_in_and_out(
    config: Config, pool: asyncpg.Pool
) -> None:
    lane = make_lane(config, pool, ARRIVED - dt.timedelta(minutes=5))
    order_id = await accepted_order(lane)
    lane.clock.now = ARRIVED + dt.timedelta(minutes=1)
    metrics = TelephonyMetrics(lane.runtime.metrics)
    await inbound_call(lane, metrics, 5, listen=True)
    assert await lane.state(order_id) == OrderState.IN_SERVICE.value
    lane.clock.advance(hours=1)
    await inbound_call(lane, metrics, 6, listen=True, hours_later=1)
    done = await lane.get(order_id)
    assert (done.state, done.checked_in_source, done.checked_out_source) == (
        OrderState.COMPLETED,
        EvidenceSource.CALL,
        EvidenceSource.CALL,
    )
    assert (done.checked_in_at, done.service_seconds) == (ARRIVED, 3600)
    async with pool.acquire() as conn:
        evidence = await visit_evidence(conn, order_id)
    calls = [r["id"] for r in await pool.fetch("SELECT id FROM calls ORDER BY id")]
    assert [(e.kind, e.source.value, e.call_id) for e in evidence] == [
        ("check_in", "call", calls[0]),
        ("check_out", "call", calls[1]),
    ]


async def test_a_call_nobody_acted_on_is_used_after_a_restart(config: Config, pool: asyncpg.Pool) -> None:
    lane = make_lane(config, pool, ARRIVED - dt.timedelta(minutes=5))
    order_id = await accepted_order(lane)
    lane.clock.now = ARRIVED + dt.timedelta(minutes=1)
    # the process died before the listener ran
    await inbound_call(lane, TelephonyMetrics(lane.runtime.metrics), 5, listen=False)
    assert await lane.state(order_id) == OrderState.ACCEPTED.value
    restarted = make_lane(config, pool, lane.clock.now)
    assert await CallEvidence(restarted.desk).catch_up() == 1
    assert await lane.state(order_id) == OrderState.IN_SERVICE.value
    assert await CallEvidence(restarted.desk).catch_up() == 0  # used once
