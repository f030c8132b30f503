"""Outages and bad bytes: the link comes back, re-syncs, and the call still ends right.

Every test is a variation of 01-inbound-queue-answered (13800138000 calls 12349, Wang
Fang 8001 answers after 3 s, 16 s of talk), played stamped so the row's times are the
recorded ones (or, where Careline's clock must agree with Asterisk's, as if the call were
happening now); each says what it changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from dispatch.runtime import Runtime
from telephony.simulator import AmiPeer, AwaitAction, Drop, Raw, Send, frame_headers, replay, stamp
from tests.ami_peer import ManualTime, asterisk_config, drained, recording, serving, up

NAME = "01-inbound-queue-answered"


def stamped_frames(frames: Sequence[bytes] | None = None) -> tuple[bytes, ...]:
    step = replay(recording(NAME), stamped=True, frames=frames).steps[0]
    assert isinstance(step, Send)
    return step.frames


def index(frames: Sequence[bytes], test: Callable[[bytes], bool], *, last: bool = False) -> int:
    found = [i for i, frame in enumerate(frames) if test(frame)]
    return found[-1] if last else found[0]


def answered(frames: Sequence[bytes]) -> int:
    """Where the operator's phone goes up (4.006 s), the first frame of the answer."""
    return index(
        frames,
        lambda f: (
            f.startswith(b"Event: Newstate") and b"Local/8001@operators" in f and b"ChannelState: 6" in f
        ),
    )


def bridged(frames: Sequence[bytes]) -> int:
    """Where the frames after both channels entered the bridge begin."""
    return index(frames, lambda f: f.startswith(b"Event: BridgeEnter"), last=True) + 1


FRAMES = stamped_frames()
# the operator's phone goes up (4.006 s) ... both channels in the bridge ... AgentComplete (20.503 s)
ANSWER = answered(FRAMES)
BRIDGED = bridged(FRAMES)
COMPLETE = index(FRAMES, lambda f: f.startswith(b"Event: AgentComplete"))


async def only_call(runtime: Runtime) -> dict[str, Any]:
    async with runtime.pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM calls")
    assert len(rows) == 1, rows
    return dict(rows[0].items())


RESYNCED = AwaitAction("CoreShowChannels")


async def outage(
    runtime: Runtime, peer: AmiPeer, before: Sequence[bytes], unseen: Sequence[bytes], after: Sequence[bytes]
) -> int:
    """After the re-sync play `before`, drop the link while `unseen` happens at Asterisk, and play
    `after` once the link is back and has re-synced."""
    peer.send(RESYNCED, Send(tuple(before)), Drop(tuple(unseen)))
    async with serving(runtime, asterisk_config(peer.port), ManualTime()) as server:
        await up(server)
        await server.link.wait_for(lambda: server.link.connects >= 2 and server.link.up)
        peer.send(RESYNCED, Send(tuple(after)))
        await drained(peer, server)
        return server.resyncs


async def test_link_dropped_mid_call_reconnects_resyncs_and_the_call_ends_right(
    runtime: Runtime, peer: AmiPeer
) -> None:
    """Variation: the connection is cut while the two talk (nothing is missed meanwhile)."""
    resyncs = await outage(runtime, peer, FRAMES[:BRIDGED], (), FRAMES[BRIDGED:])
    assert resyncs == 2
    call = await only_call(runtime)
    assert call["disposition"] == "answered"
    assert call["operator"] == "8001"
    assert (call["wait_seconds"], call["talk_seconds"]) == (3, 16)
    assert call["hangup_cause"] == 16
    assert call["resynced"] is False


async def test_answered_during_the_outage_is_seen_as_answered_by_the_resync(
    runtime: Runtime, peer: AmiPeer
) -> None:
    """Variation: the link is down from just before the operator answers until they talk;
    AgentConnect and the bridge are never seen, only the re-sync's bridged channels."""
    await outage(runtime, peer, FRAMES[:ANSWER], FRAMES[ANSWER:BRIDGED], FRAMES[BRIDGED:])
    call = await only_call(runtime)
    assert call["disposition"] == "answered"
    assert call["operator"] == "8001"
    assert call["queue"] == "hotline"
    assert call["talk_seconds"] == 16  # Asterisk's AgentComplete, seen after the outage
    assert call["resynced"] is True


async def test_call_that_ended_during_the_outage_is_closed_by_the_resync(
    runtime: Runtime, peer: AmiPeer
) -> None:
    """Variation: the link goes down mid-conversation and the call ends before it is back."""
    await outage(runtime, peer, FRAMES[:BRIDGED], FRAMES[BRIDGED:], ())
    call = await only_call(runtime)
    assert call["disposition"] == "answered"
    assert call["ended_at"] is not None
    assert call["hangup_cause"] is None  # nobody told us why
    assert call["resynced"] is True


async def test_call_that_began_during_the_outage_is_tracked_from_the_resync(
    runtime: Runtime, peer: AmiPeer
) -> None:
    """Variation: Careline connects, is cut off at once, and the call starts and is answered
    meanwhile; the re-sync is the first it hears of it."""
    await outage(runtime, peer, (), FRAMES[:BRIDGED], FRAMES[BRIDGED:])
    call = await only_call(runtime)
    assert call["direction"] == "inbound"
    assert call["did"] == "12349"
    assert call["caller_number"] == "+8613800138000"
    assert call["queue"] == "hotline"
    assert call["disposition"] == "answered"
    assert call["operator"] == "8001"
    assert call["talk_seconds"] == 16
    assert call["resynced"] is True


async def test_restarted_service_settles_the_calls_it_had_open(runtime: Runtime, peer: AmiPeer) -> None:
    """Variation: the service stops mid-call (its row stays open) and starts again after the call
    ended: the re-sync at start finds the row open and Asterisk without it, and closes it."""
    peer.send(RESYNCED, Send(FRAMES[:BRIDGED]))
    async with serving(runtime, asterisk_config(peer.port), ManualTime()) as server:
        await up(server)
        await drained(peer, server)
        metrics = server.metrics
    assert (await only_call(runtime))["ended_at"] is None
    peer.offline(FRAMES[BRIDGED:])
    async with serving(runtime, asterisk_config(peer.port), ManualTime(), metrics=metrics) as server:
        await up(server)
        await drained(peer, server)
    call = await only_call(runtime)
    assert call["disposition"] == "answered"
    assert call["resynced"] is True


async def test_garbage_truncated_and_out_of_order_frames_are_skipped_without_a_reconnect(
    runtime: Runtime, peer: AmiPeer
) -> None:
    """Variation: bytes that are no frame, a Newchannel cut short, a number that is not one, a
    Hangup with nothing in it, a call Careline never heard of, the bridge entries swapped,
    AgentComplete after the hangups, the root's Newchannel again after the end, and 1.5 MB
    without a frame end."""
    frames = list(recording(NAME).frames)
    bridge = [i for i, f in enumerate(frames) if f.startswith(b"Event: BridgeEnter")]
    frames[bridge[0]], frames[bridge[1]] = frames[bridge[1]], frames[bridge[0]]
    complete = frames.pop(index(frames, lambda f: f.startswith(b"Event: AgentComplete")))
    root_created = frames[index(frames, lambda f: f.startswith(b"Event: Newchannel"))]
    goodbye = frames.pop()
    frames += [complete, root_created, goodbye]
    frames[3:3] = [
        b"\x00\xff\xfe not a frame at all",
        b"Event: Newchannel\r\nPrivilege: call,all\r\nChannel: Local/12349@from-res",
        b"Event: Newstate\r\nChannel: X\r\nChannelState: abc\r\nUniqueid: 1.1\r\nLinkedid: 1.1",
        b"Event: Hangup",
        b"Event: Hangup\r\nUniqueid: 9.9\r\nLinkedid: 9.9\r\nCause: 16",
        "Event: UserEvent\r\nUserEvent: 紧急\r\nLinkedid: 8.8".encode(),
    ]
    peer.send(Send(stamped_frames(frames)), Raw(b"x" * 1_500_000), Raw(b"\r\n\r\n"))
    async with serving(runtime, asterisk_config(peer.port), ManualTime()) as server:
        await up(server)
        await drained(peer, server)
        assert server.link.connects == 1
        assert server.link.up
        assert server.link.skipped >= 4
    call = await only_call(runtime)
    assert call["disposition"] == "answered"
    assert call["operator"] == "8001"
    assert call["wait_seconds"] == 3
    assert call["talk_seconds"] == 16  # from the recorded times: AgentComplete came too late to count


def happening_now(seconds_in: float) -> tuple[list[bytes], float]:
    """The recording's events stamped as if it had begun `seconds_in` seconds ago, and when that was."""
    rec = recording(NAME)
    start = time.time() - seconds_in
    timed = zip(rec.frames, rec.times, strict=True)
    return [stamp(f, start + t) for f, t in timed if f.startswith(b"Event: ")], start


def aged(peer: AmiPeer, seconds_in: float) -> None:
    """Give the channels the peer holds the age they would have `seconds_in` seconds into the call
    (CoreShowChannels' Duration), rather than the moment the test handed them over."""
    rec = recording(NAME)
    born = {
        frame_headers(f)["Uniqueid"]: t
        for f, t in zip(rec.frames, rec.times, strict=True)
        if f.startswith(b"Event: Newchannel")
    }
    now = time.monotonic()
    for uniqueid in peer.channels.created:
        peer.channels.created[uniqueid] = now - (seconds_in - born[uniqueid])


async def test_service_started_while_a_call_is_bridged_tracks_it_to_its_end(
    runtime: Runtime, peer: AmiPeer
) -> None:
    """Variation: Careline's first session begins 10 s into the call, while the two talk; the
    re-sync's CoreShowChannels (the four channels, 9 and 8 s old, two of them in the queue's bridge)
    is the first it hears of it, and AgentComplete and the hang-ups come as events after it."""
    frames, start = happening_now(10.0)
    peer.offline(frames[: bridged(frames)])
    aged(peer, 10.0)
    peer.send(RESYNCED, Send(tuple(frames[bridged(frames) :])))
    async with serving(runtime, asterisk_config(peer.port), ManualTime()) as server:
        await up(server)
        await drained(peer, server)
    call = await only_call(runtime)
    assert (call["direction"], call["did"], call["caller_number"]) == ("inbound", "12349", "+8613800138000")
    assert (call["disposition"], call["queue"], call["operator"]) == ("answered", "hotline", "8001")
    assert (call["wait_seconds"], call["talk_seconds"], call["hangup_cause"]) == (3, 16, 16)
    assert call["resynced"] is True
    assert call["arrived_at"].timestamp() == pytest.approx(start + 0.5, abs=1.0)
    # AgentComplete (TalkTime 16 at 20.5 s) dates the answer the re-sync could only bound
    assert call["answered_at"].timestamp() == pytest.approx(start + 20.503 - 16, abs=0.01)
    assert call["ended_at"].timestamp() == pytest.approx(start + 20.503, abs=0.01)


async def test_answer_between_the_login_and_the_snapshot_keeps_its_time(
    runtime: Runtime, peer: AmiPeer
) -> None:
    """Variation: the session begins while 8001's phone rings (the resident waits in the queue);
    Asterisk sends the answer (DialEnd, AgentConnect, the bridge, at 4 s) right after the login,
    before Careline has asked for CoreShowChannels, whose snapshot (5 s in) then shows the two
    bridged. Those first events, of a call Careline does not know yet, wait for the snapshot."""
    frames, start = happening_now(5.0)
    answer, talking = answered(frames), bridged(frames)
    peer.offline(frames[:answer])
    aged(peer, 5.0)
    peer.send(Send(tuple(frames[answer:talking])), RESYNCED, Send(tuple(frames[talking:])))
    async with serving(runtime, asterisk_config(peer.port), ManualTime()) as server:
        await up(server)
        await drained(peer, server)
    call = await only_call(runtime)
    assert (call["disposition"], call["queue"], call["operator"]) == ("answered", "hotline", "8001")
    assert (call["wait_seconds"], call["talk_seconds"]) == (3, 16)
    assert call["answered_at"].timestamp() == pytest.approx(start + 4.006, abs=0.01)


async def test_restarted_service_sees_who_answered_while_it_was_stopped(
    runtime: Runtime, peer: AmiPeer
) -> None:
    """Variation: the service stops while the resident waits in the queue (the row stays open,
    unanswered) and 8001 answers before it starts again: at start the row is read back, knowing no
    channel, and the re-sync's snapshot shows the resident's and 8001's Local channels bridged."""
    peer.send(RESYNCED, Send(FRAMES[:ANSWER]))
    async with serving(runtime, asterisk_config(peer.port), ManualTime()) as server:
        await up(server)
        await drained(peer, server)
        metrics = server.metrics
    assert (await only_call(runtime))["answered_at"] is None
    peer.offline(FRAMES[ANSWER:BRIDGED])
    peer.send(RESYNCED, Send(FRAMES[BRIDGED:]))
    async with serving(runtime, asterisk_config(peer.port), ManualTime(), metrics=metrics) as server:
        await up(server)
        await drained(peer, server)
    call = await only_call(runtime)
    assert (call["disposition"], call["operator"], call["queue"]) == ("answered", "8001", "hotline")
    assert (call["wait_seconds"], call["talk_seconds"]) == (3, 16)
