"""`/api/v1/orders` over real HTTP against the running service, with the provider answering by
the development outbox (the same route_reply path Twilio's webhook takes) and on its job page."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from dispatch.api.bodies import parse_json_object, text_field
from dispatch.api.errors import ApiError
from dispatch.service import Service
from dispatch.users import Role, create_user, issue_token
from providers.job_links import job_link
from providers.jobs import get_job
from tests import factories
from tests.order_rows import HOME, catalogue, programme, provider

PROVIDER_SMS = "+8613500000101"
OTHER_SMS = "+8613500000102"

Api = tuple[aiohttp.ClientSession, Service, dict[str, int]]


@pytest.fixture
async def api(service: Service) -> AsyncIterator[Api]:
    assert service.runtime is not None
    async with service.runtime.pool.acquire() as conn:
        user = await create_user(conn, "wangfang", Role.OPERATOR, display_name="王芳")
        token = await issue_token(conn, user.id)
        await catalogue(conn)
        district, community = await factories.community(conn, lat=HOME[0], lon=HOME[1])
        resident = await factories.resident(
            conn, community_id=community, lat=HOME[0], lon=HOME[1], contacts=[("李娜", "+8613911110001")]
        )
        await programme(conn, resident, allowance_fen=20000, coverage=80)
        near = await provider(
            conn, name="近邻家政", sms=PROVIDER_SMS, lat=40.851, lon=111.701, districts=(district,)
        )
        other = await provider(
            conn, name="中和护理", sms=OTHER_SMS, lat=40.87, lon=111.72, districts=(district,)
        )
    async with aiohttp.ClientSession(
        base_url=service.url, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        yield http, service, {"resident": resident, "near": near, "other": other}


async def call(http: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with http.request(method, path, json=body) as resp:
        return resp.status, await resp.json()


def window(hours_ahead: float = 2, length: float = 2) -> dict[str, str]:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=hours_ahead)
    return {
        "window_start": start.astimezone(dt.timezone(dt.timedelta(hours=8))).isoformat(),
        "window_end": (start + dt.timedelta(hours=length)).isoformat(),
    }


async def create(http: aiohttp.ClientSession, world: dict[str, int], item: str = "bath") -> dict[str, Any]:
    status, body = await call(
        http,
        "POST",
        "/api/v1/orders",
        {"resident_id": world["resident"], "item_code": item, "notes": "请带助浴椅", **window()},
    )
    assert status == 201, body
    return body  # type: ignore[no-any-return]


async def test_take_offer_accept_visit_and_follow_up(api: Api) -> None:
    http, service, world = api
    created = await create(http, world)
    order = created["order"]
    assert order["state"] == "offered"
    assert (order["price_fen"], order["covered_fen"], order["copay_fen"]) == (8000, 6400, 1600)
    assert created["split"]["programme"] == "GM"
    assert [c["provider_id"] for c in created["candidates"]] == [world["near"], world["other"]]
    assert {"zh", "en"} <= set(created["candidates"][0]["reasons"][0])
    assert set(created["candidates"][0]["parts"]) == {"distance", "rating", "acceptance", "load", "fairness"}
    offer = created["offers"][0]
    assert (offer["provider_id"], offer["provider_name"], offer["chosen"]) == (
        world["near"],
        "近邻家政",
        "ranked",
    )
    code = offer["job_code"]
    assert re.fullmatch(r"[1-9][0-9]{3}", code)

    status, detail = await call(http, "GET", f"/api/v1/orders/{order['id']}")
    assert status == 200
    assert {d["kind"] for d in detail["deadlines"]} == {"order.offer_expired", "order.late_visit"}
    assert [e["kind"] for e in detail["timeline"]] == ["order.created", "order.offered"]
    assert [c["provider_id"] for c in detail["candidates"]] == [world["other"]]  # the one asked is out

    status, routed = await call(
        http, "POST", "/api/v1/sms/outbox/reply", {"from": PROVIDER_SMS, "body": f"1 {code}"}
    )
    assert (status, routed["outcome"]) == (201, "acted")
    status, conflict = await call(http, "POST", f"/api/v1/orders/{order['id']}/offer", {})
    assert status == 409
    assert (conflict["error"]["code"], conflict["error"]["state"]) == ("illegal_transition", "accepted")

    # the provider checks in on its job page
    assert service.runtime is not None
    async with service.runtime.pool.acquire() as conn:
        job = await get_job(conn, offer["job_id"])
    assert job is not None
    link = job_link(service.runtime, job).removeprefix(service.runtime.config.server.public_url)
    async with aiohttp.ClientSession(base_url=service.url) as page:
        async with page.get(link) as resp:
            html = await resp.text()
        assert resp.status == 200
        assert "请带助浴椅" in html
        assert 'value="arrived"' in html
        assert 'value="accept"' not in html
        async with page.post(link, data={"action": "arrived"}) as resp:
            assert resp.status == 200
            assert 'value="done"' in await resp.text()

    status, conflict = await call(http, "POST", f"/api/v1/orders/{order['id']}/check-in", {})
    assert (status, conflict["error"]["state"]) == (409, "in_service")
    status, moved = await call(http, "POST", f"/api/v1/orders/{order['id']}/check-out", {"source": "call"})
    assert status == 200
    done = moved["order"]
    assert (done["state"], done["checked_in_source"], done["checked_out_source"]) == (
        "completed",
        "page",
        "call",
    )
    assert isinstance(done["service_seconds"], int)

    status, error = await call(http, "POST", f"/api/v1/orders/{order['id']}/confirm", {"rating": 6})
    assert (status, error["error"]["field"]) == (400, "rating")
    status, confirmed = await call(
        http, "POST", f"/api/v1/orders/{order['id']}/confirm", {"rating": 2, "note": "迟到了"}
    )
    assert (status, confirmed["order"]["state"], confirmed["order"]["rating"]) == (200, "complaint", 2)
    status, rated = await call(http, "POST", f"/api/v1/orders/{order['id']}/rate", {"rating": 4})
    assert (status, rated["order"]["state"], rated["order"]["rating"]) == (200, "complaint", 4)
    status, conflict = await call(http, "POST", f"/api/v1/orders/{order['id']}/cancel", {"reason": "x"})
    assert (status, conflict["error"]["state"]) == (409, "complaint")

    status, detail = await call(http, "GET", f"/api/v1/orders/{order['id']}")
    assert [(e["kind"], e["source"]) for e in detail["evidence"]] == [
        ("check_in", "page"),
        ("check_out", "call"),
    ]
    assert detail["candidates"] == []
    assert [e["kind"] for e in detail["timeline"]] == [
        "order.created",
        "order.offered",
        "order.accepted",
        "order.in_service",
        "order.completed",
        "order.complaint",
        "order.rate",
    ]
    assert detail["timeline"][2]["actor"] == f"provider:{world['near']}"
    assert detail["timeline"][3]["actor"] == f"page:provider:{world['near']}"


async def test_re_offer_override_cancel_and_lists(api: Api) -> None:
    http, _, world = api
    first = (await create(http, world))["order"]
    status, moved = await call(
        http,
        "POST",
        f"/api/v1/orders/{first['id']}/re-offer",
        {"provider_id": world["other"], "reason": "老人点名"},
    )
    assert status == 200
    assert [(o["provider_id"], o["chosen"]) for o in moved["offers"]] == [(world["other"], "operator")]
    status, error = await call(
        http, "POST", f"/api/v1/orders/{first['id']}/re-offer", {"provider_id": 999999}
    )
    assert (status, error["error"]["field"]) == (400, "provider_id")
    status, error = await call(http, "POST", f"/api/v1/orders/{first['id']}/cancel", {})
    assert (status, error["error"]["field"]) == (400, "reason")
    status, cancelled = await call(
        http, "POST", f"/api/v1/orders/{first['id']}/cancel", {"reason": "老人住院"}
    )
    assert (status, cancelled["order"]["state"]) == (200, "cancelled")
    second = (await create(http, world, "clean"))["order"]

    status, listing = await call(http, "GET", "/api/v1/orders")
    assert (status, [o["id"] for o in listing["items"]], listing["total"]) == (
        200,
        [second["id"], first["id"]],
        2,
    )
    status, listing = await call(http, "GET", "/api/v1/orders?state=cancelled")
    assert [o["id"] for o in listing["items"]] == [first["id"]]
    status, listing = await call(http, "GET", f"/api/v1/orders?resident={world['resident']}&limit=1")
    assert ([o["id"] for o in listing["items"]], listing["total"], listing["limit"]) == ([second["id"]], 2, 1)
    status, listing = await call(http, "GET", f"/api/v1/orders?provider={world['other']}")
    assert listing["items"] == []  # offered to, but never accepted
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat().replace("+00:00", "Z")
    status, listing = await call(http, "GET", f"/api/v1/orders?since={tomorrow}")
    assert (status, listing["total"]) == (200, 0)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("POST", "/api/v1/orders", {}, 400, "resident_id"),
        ("POST", "/api/v1/orders", [1], 400, "body"),
        ("POST", "/api/v1/orders", {"resident_id": 1, "item_code": "bath"}, 400, "window_start"),
        ("GET", "/api/v1/orders?state=burning", None, 400, "state"),
        ("GET", "/api/v1/orders?resident=abc", None, 400, "resident"),
        ("GET", "/api/v1/orders?since=yesterday", None, 400, "since"),
        ("GET", "/api/v1/orders?since=0001-01-01T00:00:00%2B01:00", None, 400, "since"),
        ("GET", "/api/v1/orders?limit=0", None, 400, "limit"),
    ],
)
async def test_bad_requests_name_the_field(
    api: Api, method: str, path: str, body: Any, status: int, field: str
) -> None:
    http, _, _ = api
    got, error = await call(http, method, path, body)
    assert got == status
    assert error["error"].get("field") == field


async def test_bad_orders_name_the_field(api: Api) -> None:
    http, _, world = api
    good = {"resident_id": world["resident"], "item_code": "bath", **window()}
    cases: list[tuple[dict[str, Any], str]] = [
        ({**good, "resident_id": 999999}, "resident_id"),
        ({**good, "item_code": "massage"}, "item_code"),
        ({**good, "window_start": "2026-11-24T09:00:00"}, "window_start"),
        ({**good, "window_end": good["window_start"]}, "window_end"),
        ({**good, **window(hours_ahead=-5)}, "window_end"),
        ({**good, **window(hours_ahead=24 * 400)}, "window_start"),
        ({**good, **window(length=24 * 8)}, "window_end"),
        ({**good, "notes": 7}, "notes"),
        ({**good, "window_start": "0001-01-01T00:00:00+01:00"}, "window_start"),
    ]
    for body, field in cases:
        status, error = await call(http, "POST", "/api/v1/orders", body)
        assert (status, error["error"].get("field")) == (400, field), body
    order = (await create(http, world))["order"]
    steps: list[tuple[str, dict[str, Any], str]] = [
        ("check-in", {"source": "sms"}, "source"),
        ("check-in", {"at": "soon"}, "at"),
        ("check-in", {"at": "2000-01-01T00:00:00Z"}, "at"),
        ("confirm", {}, "rating"),
        ("confirm", {"rating": True}, "rating"),
        ("rate", {"rating": 0}, "rating"),
        ("offer", {"provider_id": "x"}, "provider_id"),
    ]
    for action, body, field in steps:
        status, error = await call(http, "POST", f"/api/v1/orders/{order['id']}/{action}", body)
        assert (status, error["error"].get("field")) == (400, field), (action, body)


async def test_unknown_order_is_404_and_no_token_is_401(api: Api) -> None:
    http, service, _ = api
    assert (await call(http, "GET", "/api/v1/orders/424242"))[0] == 404
    assert (await call(http, "POST", "/api/v1/orders/424242/cancel", {"reason": "x"}))[0] == 404
    assert (await call(http, "GET", "/api/v1/orders/4242424242424242424242"))[0] == 404
    async with aiohttp.ClientSession() as anonymous, anonymous.get(service.url + "/api/v1/orders") as resp:
        assert resp.status == 401


async def test_nobody_to_offer_is_unfilled_and_409_on_offer(api: Api) -> None:
    http, service, world = api
    assert service.runtime is not None
    await service.runtime.pool.execute("UPDATE providers SET status = 'suspended'")
    created = await create(http, world)
    assert (created["order"]["state"], created["offers"], created["candidates"]) == ("unfilled", [], [])
    status, error = await call(http, "POST", f"/api/v1/orders/{created['order']['id']}/offer", {})
    assert (status, error["error"]["code"]) == (409, "no_candidate")


async def test_openapi_describes_every_order_action(api: Api) -> None:
    http, _, _ = api
    status, spec = await call(http, "GET", "/api/openapi.json")
    assert status == 200
    for action in ("offer", "re-offer", "check-in", "check-out", "confirm", "cancel", "rate"):
        operation = spec["paths"][f"/api/v1/orders/{{id}}/{action}"]["post"]
        assert "409" in operation["responses"]
    assert {"get", "post"} <= set(spec["paths"]["/api/v1/orders"])
    assert "Candidate" in spec["components"]["schemas"]


@pytest.mark.parametrize("text", ["取消\u0000了", "half \udb91 a pair"])
def test_text_postgresql_cannot_store_is_a_400_naming_the_field(text: str) -> None:
    body = parse_json_object(json.dumps({"reason": text}).encode())
    with pytest.raises(ApiError) as refused:
        text_field(body, "reason")
    assert (refused.value.status, refused.value.extra.get("field")) == (400, "reason")
    assert text_field({"reason": " 取消了 "}, "reason") == "取消了"
