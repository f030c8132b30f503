"""The calls API, /healthz and /metrics of a real `Service` whose Asterisk is the test's AMI peer."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from dispatch.config import Config
from dispatch.service import Service
from dispatch.users import Role, create_user, issue_token
from telephony.simulator import AmiPeer, replay
from tests import factories
from tests.ami_peer import SECRET, USERNAME, asterisk_config, drained, recording, up


@dataclasses.dataclass
class World:
    service: Service
    peer: AmiPeer
    http: aiohttp.ClientSession
    resident: int

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, path, json=body) as resp:
            assert resp.content_type == "application/json", await resp.text()
            return resp.status, await resp.json()


@pytest.fixture
async def world(config: Config) -> AsyncIterator[World]:
    peer = AmiPeer(username=USERNAME, secret=SECRET)
    await peer.start()
    service = Service(dataclasses.replace(config, asterisk=(asterisk_config(peer.port),)))
    await service.start()
    try:
        assert service.runtime is not None
        assert service.telephony is not None
        async with service.runtime.pool.acquire() as conn:
            user = await create_user(conn, "wangfang", Role.OPERATOR)
            token = await issue_token(conn, user.id)
            _, community = await factories.community(conn)
            resident = await factories.resident(conn, community_id=community, phone="+8613800138000")
        await up(service.telephony.servers[0])
        async with aiohttp.ClientSession(
            base_url=service.url, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            yield World(service, peer, http, resident)
    finally:
        await service.stop()
        await peer.stop()


async def test_calls_are_listed_filtered_and_read(world: World) -> None:
    assert world.service.telephony is not None
    server = world.service.telephony.servers[0]
    world.peer.play(replay(recording("01-inbound-queue-answered")))
    world.peer.play(replay(recording("02-abandoned-in-queue")))
    await drained(world.peer, server)

    status, listing = await world.call("GET", "/api/v1/calls")
    assert status == 200
    assert listing["total"] == 2
    assert [c["disposition"] for c in listing["items"]] == ["abandoned", "answered"]  # newest first
    for query, total in [
        ("disposition=answered", 1),
        (f"resident={world.resident}", 1),
        ("server=pbx1", 2),
        ("server=elsewhere", 0),
        ("since=2999-01-01T00:00:00%2B08:00", 0),
        ("limit=1&offset=1", 2),
    ]:
        status, page = await world.call("GET", f"/api/v1/calls?{query}")
        assert (status, page["total"]) == (200, total), query
    for query, field in [
        ("disposition=lost", "disposition"),
        ("since=yesterday", "since"),
        ("resident=x", "resident"),
    ]:
        status, error = await world.call("GET", f"/api/v1/calls?{query}")
        assert (status, error["error"]["field"]) == (400, field)

    answered = next(c for c in listing["items"] if c["disposition"] == "answered")
    assert answered["resident_id"] == world.resident
    status, detail = await world.call("GET", f"/api/v1/calls/{answered['id']}")
    assert status == 200
    assert detail["call"]["operator"] == "8001"
    assert [e["kind"] for e in detail["timeline"]] == [
        "call.ringing",
        "call.from_resident",
        "call.answered",
        "call.ended",
    ]
    assert (await world.call("GET", "/api/v1/calls/99999"))[0] == 404

    status, health = await world.call("GET", "/healthz")
    assert status == 200
    assert health["status"] == "ok"
    assert health["asterisk:pbx1"]["status"] == "up"
    async with world.http.get("/metrics") as resp:
        metrics = await resp.text()
    assert 'careline_ami_link_up{server="pbx1"} 1.0' in metrics
    assert (
        'careline_calls_ended_total{direction="inbound",disposition="answered",server="pbx1"} 1.0' in metrics
    )


async def test_callback_and_family_calls_are_placed(world: World) -> None:
    status, placed = await world.call(
        "POST", "/api/v1/calls/callback", {"resident_id": world.resident, "operator": "8001"}
    )
    assert status == 202
    attempt = placed["attempt"]
    assert (attempt["purpose"], attempt["target"], attempt["operator"]) == (
        "callback",
        "+8613800138000",
        "8001",
    )
    assert world.service.telephony is not None
    await drained(world.peer, world.service.telephony.servers[0])
    status, read = await world.call("GET", f"/api/v1/calls/attempts/{attempt['id']}")
    assert (status, read["attempt"]["state"]) == (200, "queued")  # the peer accepted it, nothing more yet

    status, placed = await world.call(
        "POST", "/api/v1/calls/callback", {"number": "0471 691 2345", "operator": "8002"}
    )
    assert (status, placed["attempt"]["target"]) == (202, "+864716912345")

    for body, code, field in [
        ({"resident_id": world.resident}, 400, "operator"),
        ({"resident_id": world.resident, "operator": "wang"}, 400, "operator"),
        ({"operator": "8001"}, 400, "resident_id"),
    ]:
        status, error = await world.call("POST", "/api/v1/calls/callback", body)
        assert (status, error["error"]["field"]) == (code, field)
    status, error = await world.call(
        "POST", "/api/v1/calls/callback", {"resident_id": 99999, "operator": "8001"}
    )
    assert (status, error["error"]["code"]) == (404, "not_found")
    status, error = await world.call("POST", "/api/v1/calls/callback", {"number": "12", "operator": "8001"})
    assert (status, error["error"]["code"]) == (409, "no_number")
    status, error = await world.call("POST", "/api/v1/calls/family", {"alert_id": 99999, "position": 1})
    assert (status, error["error"]["code"]) == (404, "not_found")
    status, error = await world.call("POST", "/api/v1/calls/family", {"alert_id": 1})
    assert (status, error["error"]["field"]) == (400, "position")


async def test_asterisk_down_is_loud_in_health_and_refuses_calls(world: World) -> None:
    """The peer goes away: /healthz stays 200 (the database decides) but says the link is down."""
    await world.peer.stop()
    world.peer.drop_all()
    assert world.service.telephony is not None
    server = world.service.telephony.servers[0]
    await server.link.wait_for(lambda: not server.link.up)
    status, health = await world.call("GET", "/healthz")
    assert status == 200
    assert health["status"] == "degraded"
    assert health["asterisk:pbx1"]["status"] in ("down", "connecting")
    status, error = await world.call(
        "POST", "/api/v1/calls/callback", {"resident_id": world.resident, "operator": "8001"}
    )
    assert (status, error["error"]["code"]) == (409, "asterisk_unavailable")
    assert error["error"]["attempt"]["result"] == "failed"
