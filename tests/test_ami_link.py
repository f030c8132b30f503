"""The AMI link: login, a refused secret retried slowly, backoff, keep-alive, health and metrics."""

from __future__ import annotations

import asyncio

from prometheus_client import generate_latest

from dispatch.runtime import Runtime
from telephony.ami import LinkState
from telephony.simulator import AmiPeer, replay
from tests.ami_peer import USERNAME, ManualTime, asterisk_config, drained, recording, serving, up


async def test_login_resync_and_queue_as_recorded(runtime: Runtime, peer: AmiPeer) -> None:
    """00: login, the re-sync finds no channels, the queue has its two members; no calls."""
    peer.play(replay(recording("00-login-ping-coresettings-queuestatus")))
    async with serving(runtime, asterisk_config(peer.port), ManualTime()) as server:
        await up(server)
        await drained(peer, server)
        health = await server.health()
        assert health.ok
        assert health.detail["status"] == "up"
        assert health.detail["asterisk"] == "Asterisk Call Manager/9.0.0"
        assert health.detail["calls_active"] == 0
        assert [m["name"] for m in health.detail["queue"]["members"]] == ["Wang Fang 8001", "Li Wei 8002"]
        assert [m["interface"] for m in health.detail["queue"]["members"]] == [
            "Local/8001@operators",
            "Local/8002@operators",
        ]
        metrics = generate_latest(runtime.metrics).decode()
        assert 'careline_ami_link_up{server="pbx1"} 1.0' in metrics
    sent = [a["Action"] for a in peer.received]
    assert sent[:3] == ["Login", "CoreShowChannels", "QueueStatus"]
    assert peer.received[0]["Username"] == USERNAME
    assert sent[-1] == "Logoff"
    async with runtime.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM calls") == 0


async def test_wrong_secret_is_reported_and_retried_slowly(runtime: Runtime) -> None:
    """00b: Asterisk answers `Response: Error`, `Authentication failed`."""
    peer = AmiPeer(username=USERNAME, secret="the-real-secret")
    await peer.start()
    time = ManualTime()
    try:
        async with serving(runtime, asterisk_config(peer.port), time) as server:
            async with asyncio.timeout(10):
                await time.until(lambda: time.count("auth_retry") == 1)
            assert server.link.state is LinkState.AUTH_FAILED
            health = await server.health()
            assert not health.ok
            assert health.detail["status"] == "auth_failed"
            assert "Authentication failed" in health.detail["error"]
            assert "CARELINE_AMI_SECRET_PBX1" in health.detail["error"]
            # one refused login, then a wait of about a minute (not a tight loop)
            assert peer.refused_logins == 1
            delay = next(seconds for seconds, why in time.waits if why == "auth_retry")
            assert 48 <= delay <= 72
            assert time.count("reconnect") == 0
            time.release("auth_retry")
            async with asyncio.timeout(10):
                await time.until(lambda: time.count("auth_retry") == 2)
            assert peer.refused_logins == 2
            assert server.link.login_failures == 2
            metrics = generate_latest(runtime.metrics).decode()
            assert 'careline_ami_login_failures_total{server="pbx1"} 2.0' in metrics
            assert 'careline_ami_link_up{server="pbx1"} 0.0' in metrics
    finally:
        await peer.stop()


async def test_recorded_wrong_secret_answer_is_read_as_a_refusal(runtime: Runtime, peer: AmiPeer) -> None:
    """00b's bytes as they are: the peer refuses, and the link's error quotes Asterisk's message."""
    error = recording("00b-login-wrong-secret").frames[0]
    assert b"Authentication failed" in error
    peer.secret = "not-what-careline-sends"
    time = ManualTime()
    async with serving(runtime, asterisk_config(peer.port), time) as server:
        async with asyncio.timeout(10):
            await time.until(lambda: time.count("auth_retry") == 1)
        assert server.link.error is not None
        assert "Authentication failed" in server.link.error


async def test_unreachable_asterisk_backs_off_capped_and_jittered(runtime: Runtime) -> None:
    """Nobody listens on the port: every try fails at once; the waits double up to the cap."""
    peer = AmiPeer()
    await peer.start()
    port = peer.port
    await peer.stop()
    time = ManualTime()
    config = asterisk_config(port, reconnect_min_seconds=1.0, reconnect_max_seconds=8.0)
    async with serving(runtime, config, time) as server:
        async with asyncio.timeout(10):
            await time.until(lambda: time.count("reconnect") >= 7)
        health = await server.health()
        assert not health.ok
        assert health.detail["status"] in ("down", "connecting")
    delays = [seconds for seconds, why in time.waits if why == "reconnect"][:7]
    ceilings = [1, 2, 4, 8, 8, 8, 8]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) > 1  # jittered, not in step


async def test_something_that_is_not_asterisk_is_named_as_such(runtime: Runtime) -> None:
    async def http_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    server_ = await asyncio.start_server(http_server, "127.0.0.1", 0)
    port = server_.sockets[0].getsockname()[1]
    time = ManualTime()
    try:
        async with serving(runtime, asterisk_config(port), time) as server:
            async with asyncio.timeout(10):
                await time.until(lambda: time.count("reconnect") >= 1)
            assert server.link.error is not None
            assert "not an Asterisk manager" in server.link.error
    finally:
        server_.close()
        await server_.wait_closed()


async def test_keepalive_pings_and_a_silent_asterisk_is_reconnected(runtime: Runtime, peer: AmiPeer) -> None:
    time = ManualTime()
    config = asterisk_config(peer.port, ping_timeout_seconds=0.2)
    async with serving(runtime, config, time) as server:
        await up(server)
        async with asyncio.timeout(10):
            await time.until(lambda: time.count("keepalive") == 1)
        time.release("keepalive")
        async with asyncio.timeout(10):
            await time.until(lambda: time.count("keepalive") == 2)
        assert [a["Action"] for a in peer.received].count("Ping") == 1
        assert server.link.connects == 1
        # now Asterisk stops answering Pings: the link gives up on this connection and makes a new one
        peer.mute.add("Ping")
        time.release("keepalive")
        async with asyncio.timeout(10):
            await server.link.wait_for(lambda: server.link.connects == 2 and server.link.up)
        assert peer.connections == 2
