"""`/api/v1/alerts` over real HTTP against the running service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from dispatch.events import DomainEvent, timeline
from dispatch.notices import Severity, raise_notice
from dispatch.service import Service
from dispatch.users import Role, create_user, issue_token
from tests import factories


@pytest.fixture
async def api(service: Service) -> AsyncIterator[tuple[aiohttp.ClientSession, str, dict[str, int]]]:
    assert service.runtime is not None
    async with service.runtime.pool.acquire() as conn:
        user = await create_user(conn, "wangfang", Role.OPERATOR, display_name="王芳")
        token = await issue_token(conn, user.id)
        district, community = await factories.community(conn)
        resident = await factories.resident(
            conn, community_id=community, contacts=[("李娜", "+8613911110001")]
        )
        team = await factories.team(conn, code="T1", district_ids=[district], lat=40.86, lon=111.71)
    async with aiohttp.ClientSession(
        base_url=service.url, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        yield http, service.url, {"resident": resident, "team": team}


async def call(http: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with http.request(method, path, json=body) as resp:
        return resp.status, await resp.json()


async def test_raise_join_act_and_read(api: tuple[aiohttp.ClientSession, str, dict[str, int]]) -> None:
    http, _, world = api
    status, created = await call(
        http,
        "POST",
        "/api/v1/alerts",
        {"resident_id": world["resident"], "kind": "sos", "note": "老人来电说胸口疼"},
    )
    assert status == 201
    alert_id = created["alert"]["id"]
    assert created["alert"]["state"] == "raised"
    status, joined = await call(
        http, "POST", "/api/v1/alerts", {"resident_id": world["resident"], "kind": "sos"}
    )
    assert status == 200
    assert joined == {"alert": joined["alert"], "created": False}
    assert joined["alert"]["triggers"] == 2

    status, detail = await call(http, "GET", f"/api/v1/alerts/{alert_id}")
    assert status == 200
    assert detail["resident"]["name"] == "王秀英"
    assert detail["teams"][0]["suggested"] is True
    assert detail["teams"][0]["reasons"]
    assert {d["kind"] for d in detail["deadlines"]} == {"alert.ack_supervisor", "alert.ack_all_operators"}
    assert [e["kind"] for e in detail["timeline"]] == ["alert.raised", "alert.triggered_again"]

    assert (await call(http, "POST", f"/api/v1/alerts/{alert_id}/acknowledge", {"real": True}))[0] == 200
    status, conflict = await call(http, "POST", f"/api/v1/alerts/{alert_id}/acknowledge")
    assert status == 409
    assert conflict["error"]["code"] == "illegal_transition"
    assert conflict["error"]["state"] == "acknowledged"

    status, moved = await call(http, "POST", f"/api/v1/alerts/{alert_id}/dispatch", {})
    assert status == 200
    assert moved["alert"]["team_id"] == world["team"]
    assert (await call(http, "POST", f"/api/v1/alerts/{alert_id}/handoff-120", {"reason": "胸痛"}))[0] == 200
    assert (await call(http, "POST", f"/api/v1/alerts/{alert_id}/note", {"text": "女儿已到"}))[0] == 200
    status, error = await call(http, "POST", f"/api/v1/alerts/{alert_id}/resolve", {})
    assert status == 400
    assert error["error"]["field"] == "outcome"
    status, error = await call(http, "POST", f"/api/v1/alerts/{alert_id}/resolve", {"outcome": "fine"})
    assert status == 400
    status, resolved = await call(http, "POST", f"/api/v1/alerts/{alert_id}/resolve", {"outcome": "hospital"})
    assert status == 200
    assert resolved["alert"]["state"] == "resolved"

    status, listing = await call(http, "GET", "/api/v1/alerts?state=resolved")
    assert status == 200
    assert [a["id"] for a in listing["items"]] == [alert_id]
    status, figures = await call(http, "GET", "/api/v1/alerts/figures?days=3")
    assert status == 200
    assert len(figures["days"]) == 3
    assert figures["today"]["alerts"] == 1
    assert figures["today"]["acknowledged_in_time"] == 1


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("POST", "/api/v1/alerts", {}, 400, "resident_id"),
        ("POST", "/api/v1/alerts", {"resident_id": "1"}, 400, "resident_id"),
        ("POST", "/api/v1/alerts", {"resident_id": 999999}, 400, "resident_id"),
        ("POST", "/api/v1/alerts", {"device_id": 1, "kind": "meteor"}, 400, "kind"),
        ("POST", "/api/v1/alerts", [1, 2], 400, "body"),
        ("GET", "/api/v1/alerts?state=burning", None, 400, "state"),
        ("GET", "/api/v1/alerts?since=yesterday", None, 400, "since"),
        ("GET", "/api/v1/alerts?since=0001-01-01T00:00:00%2B01:00", None, 400, "since"),
        ("GET", "/api/v1/alerts?limit=0", None, 400, "limit"),
        ("GET", "/api/v1/alerts/figures?days=0", None, 400, "days"),
        ("POST", "/api/v1/alerts/1/cancel", {}, 400, "reason"),
    ],
)
async def test_bad_requests_name_the_field(
    api: tuple[aiohttp.ClientSession, str, dict[str, int]],
    method: str,
    path: str,
    body: Any,
    status: int,
    field: str,
) -> None:
    http, _, _ = api
    got, error = await call(http, method, path, body)
    assert got == status
    assert error["error"].get("field") == field or field in error["error"]["message"]


async def test_unknown_alert_is_404_and_no_token_is_401(
    api: tuple[aiohttp.ClientSession, str, dict[str, int]],
) -> None:
    http, url, _ = api
    assert (await call(http, "GET", "/api/v1/alerts/424242"))[0] == 404
    assert (await call(http, "POST", "/api/v1/alerts/424242/acknowledge"))[0] == 404
    async with aiohttp.ClientSession() as anonymous, anonymous.get(url + "/api/v1/alerts") as resp:
        assert resp.status == 401


async def test_openapi_describes_every_alert_action(
    api: tuple[aiohttp.ClientSession, str, dict[str, int]],
) -> None:
    http, _, _ = api
    status, spec = await call(http, "GET", "/api/openapi.json")
    assert status == 200
    for action in (
        "acknowledge",
        "dispatch",
        "team-acknowledge",
        "on-scene",
        "resolve",
        "cancel",
        "handoff-120",
        "note",
    ):
        operation = spec["paths"][f"/api/v1/alerts/{{id}}/{action}"]["post"]
        assert "409" in operation["responses"]


async def test_notices_are_listed_and_acknowledged_once(
    api: tuple[aiohttp.ClientSession, str, dict[str, int]], service: Service
) -> None:
    http, _, _ = api
    assert service.runtime is not None
    async with service.runtime.pool.acquire() as conn:
        await raise_notice(
            conn,
            kind="alert.ack_supervisor",
            severity=Severity.CRITICAL,
            text="警情 7：无人接警",
            subject_type="alert",
            subject_id=7,
            data={"audience": "supervisor"},
        )
        await raise_notice(conn, kind="sms.failed", severity=Severity.WARNING, text="短信发送失败")
    status, listing = await call(http, "GET", "/api/v1/notices?subject_type=alert")
    assert status == 200
    assert [(n["kind"], n["audience"]) for n in listing["items"]] == [("alert.ack_supervisor", "supervisor")]
    notice_id = listing["items"][0]["id"]
    seen: list[DomainEvent] = []
    told = asyncio.Event()

    async def listen(event: DomainEvent) -> None:
        seen.append(event)
        told.set()

    watching = service.runtime.bus.subscribe("test", listen, prefix="notice.", size=10, lossless=True)
    assert (await call(http, "POST", f"/api/v1/notices/{notice_id}/acknowledge"))[0] == 200
    await asyncio.wait_for(told.wait(), 10)
    await watching.close()
    # every floor is told (it drops the notice), and who acknowledged it is in the event log
    assert [(e.kind, e.subject_id, e.actor) for e in seen] == [
        ("notice.acknowledged", notice_id, "user:wangfang")
    ]
    async with service.runtime.pool.acquire() as conn:
        logged = [e.kind for e in await timeline(conn, "notice", notice_id)]
    assert logged == ["notice.raised", "notice.acknowledged"]
    status, again = await call(http, "POST", f"/api/v1/notices/{notice_id}/acknowledge")
    assert status == 409
    assert again["error"]["code"] == "already_acknowledged"
    status, open_only = await call(http, "GET", "/api/v1/notices")
    assert [n["kind"] for n in open_only["items"]] == ["sms.failed"]
    status, everything = await call(http, "GET", "/api/v1/notices?all=true")
    assert everything["total"] == 2
    assert everything["items"][-1]["acknowledged_at"] is not None
    assert (await call(http, "POST", "/api/v1/notices/99999/acknowledge"))[0] == 404


async def test_a_body_nested_too_deep_is_a_400(
    api: tuple[aiohttp.ClientSession, str, dict[str, int]],
) -> None:
    http, _, _ = api
    deep = "[" * 100_000 + "]" * 100_000
    headers = {"Content-Type": "application/json"}
    async with http.post("/api/v1/alerts", data=deep, headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["field"] == "body"


async def test_a_nul_in_a_query_parameter_is_a_400_naming_it_for_the_api_and_the_console(
    api: tuple[aiohttp.ClientSession, str, dict[str, int]],
) -> None:
    http, _, _ = api
    # found by the schema fuzzer: a NUL in a filter reached PostgreSQL and came back a 500
    async with http.get("/api/v1/notices?subject_type=a%00b&subject_id=1") as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["error"]["field"] == "subject_type"
    async with http.get("/console/residents?q=%E7%8E%8B%00") as resp:
        assert resp.status == 400
        assert (await resp.text()).startswith("q: text may not hold a NUL")
    async with http.get("/api/v1/notices?subject_type=alert") as resp:
        assert resp.status == 200
