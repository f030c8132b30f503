"""The residents and providers API over HTTP, through the real running service."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from dispatch.devices import DeviceInput, upsert_device
from dispatch.resident_input import ResidentInput
from dispatch.residents import upsert_resident
from dispatch.service import Service
from dispatch.users import Role, create_user, issue_token
from providers.provider_input import ProviderInput
from providers.registry import upsert_provider
from tests.registry_seed import Geo, id_number, licence_number, seed_catalogue, seed_geography

WANG = id_number(dt.date(1941, 3, 9), 124)
ZHANG = id_number(dt.date(1938, 11, 30), 222, area="150105")


@dataclass(frozen=True)
class World:
    url: str
    geo: Geo
    operator: str  # bearer tokens
    admin: str
    wang_id: int
    zhang_id: int
    provider_ids: tuple[int, ...]


@pytest.fixture
async def world(service: Service) -> World:
    assert service.runtime is not None
    book = service.runtime.phones
    async with service.runtime.pool.acquire() as conn:
        await seed_catalogue(conn)
        geo = await seed_geography(conn)
        wang, _ = await upsert_resident(
            conn,
            ResidentInput.build(
                book,
                id_number=WANG,
                name="王秀兰",
                phones=["0471-6912345", "13800138000"],
                community_id=geo.haidong,
                living_situation="独居",
                contacts=[("李明", "儿子", "13947100001")],
            ),
        )
        zhang, _ = await upsert_resident(
            conn,
            ResidentInput.build(book, id_number=ZHANG, name="张秀英", community_id=geo.xingfu_saihan),
        )
        await upsert_device(
            conn,
            DeviceInput.build(book, serial="HU-9", kind="home_unit", resident_id=zhang.id, caller="6900009"),
        )
        provider_ids = []
        for n, (items, areas, status) in enumerate(
            [
                ("HK01:45;HK02", "新城区", ""),
                ("LC01", "大学西路街道/幸福社区", ""),
                ("HK01", "赛罕区", "suspended"),
            ],
            start=1,
        ):
            provider, _ = await upsert_provider(
                conn,
                ProviderInput.build(
                    book,
                    licence_no=licence_number(n),
                    name=f"康乐家政{n}",
                    sms=f"1394710200{n}",
                    items=items,
                    areas=areas,
                    status=status,
                ),
            )
            provider_ids.append(provider.id)
        operator = await create_user(conn, "op", Role.OPERATOR)
        admin = await create_user(conn, "boss", Role.ADMIN)
        return World(
            url=service.url,
            geo=geo,
            operator=await issue_token(conn, operator.id),
            admin=await issue_token(conn, admin.id),
            wang_id=wang.id,
            zhang_id=zhang.id,
            provider_ids=tuple(provider_ids),
        )


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get(
    http: aiohttp.ClientSession, world: World, path: str, *, token: str | None = None, **params: str
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token or world.operator}"}
    async with http.get(world.url + path, params=params, headers=headers) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


async def test_no_token_or_a_wrong_one_is_401_json(http: aiohttp.ClientSession, world: World) -> None:
    for path in ("/api/v1/residents", f"/api/v1/residents/{world.wang_id}", "/api/v1/providers"):
        async with http.get(world.url + path) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == "unauthorized"
        status, body = await get(http, world, path, token="cl_not-a-real-token")
        assert status == 401
        assert body["error"]["code"] == "unauthorized"
        async with http.get(world.url + path, headers={"Authorization": "Basic b3A6b3A="}) as resp:
            assert resp.status == 401


async def test_search_is_paged(http: aiohttp.ClientSession, world: World) -> None:
    status, body = await get(http, world, "/api/v1/residents", q="秀", limit="1")
    assert status == 200
    assert (body["total"], body["limit"], body["offset"], len(body["items"])) == (2, 1, 0, 1)
    first = body["items"][0]["id"]
    status, body = await get(http, world, "/api/v1/residents", q="秀", limit="1", offset="1")
    assert [r["id"] for r in body["items"]] != [first]
    assert body["total"] == 2
    status, body = await get(http, world, "/api/v1/residents", offset="5")
    assert (status, body["items"], body["total"]) == (200, [], 2)
    status, body = await get(http, world, "/api/v1/residents")
    assert body["limit"] == 50


@pytest.mark.parametrize(
    "typed", ["(0471)6912345", "6912345", "+86 138 0013 8000", "８６１３８００１３８０００"]
)
async def test_search_by_phone_in_any_form(http: aiohttp.ClientSession, world: World, typed: str) -> None:
    status, body = await get(http, world, "/api/v1/residents", phone=typed)
    assert status == 200
    assert [r["id"] for r in body["items"]] == [world.wang_id]
    assert body["items"][0]["phones"] == ["+864716912345", "+8613800138000"]


async def test_search_by_device_number_and_community(http: aiohttp.ClientSession, world: World) -> None:
    _, body = await get(http, world, "/api/v1/residents", phone="0471-6900009")
    assert [r["id"] for r in body["items"]] == [world.zhang_id]
    _, body = await get(http, world, "/api/v1/residents", community="幸福社区")
    assert [(r["name"], r["district"]) for r in body["items"]] == [("张秀英", "赛罕区")]
    _, body = await get(http, world, "/api/v1/residents", community=str(world.geo.haidong))
    assert [r["name"] for r in body["items"]] == ["王秀兰"]


async def test_card_masks_the_id_number(http: aiohttp.ClientSession, world: World) -> None:
    async with http.get(
        f"{world.url}/api/v1/residents/{world.wang_id}", headers={"Authorization": f"Bearer {world.operator}"}
    ) as resp:
        assert resp.status == 200
        text = await resp.text()
        body = await resp.json()
    assert WANG not in text
    assert body["id_number_masked"] == WANG[:6] + "********" + WANG[-4:]
    assert "id_number" not in body
    assert body["sex"] == "F"
    assert body["birth_date"] == "1941-03-09"
    assert body["living_situation"] == "alone"
    assert body["place"]["district"] == "新城区"
    assert [p["display"] for p in body["phones"]] == ["0471 691 2345", "13800138000"]
    assert body["emergency_contacts"] == [
        {
            "position": 1,
            "name": "李明",
            "relation": "儿子",
            "phone": "+8613947100001",
            "display": "13947100001",
        }
    ]
    _, body = await get(http, world, f"/api/v1/residents/{world.zhang_id}")
    assert [d["serial"] for d in body["devices"]] == ["HU-9"]
    assert body["devices"][0]["caller"] == "+864716900009"


async def test_every_opening_of_a_card_is_in_the_access_log(
    http: aiohttp.ClientSession, world: World, service: Service
) -> None:
    await get(http, world, f"/api/v1/residents/{world.wang_id}")
    await get(http, world, f"/api/v1/residents/{world.zhang_id}", token=world.admin)
    await get(http, world, "/api/v1/residents", q="王")  # a search opens no record
    assert service.runtime is not None
    rows = await service.runtime.pool.fetch(
        "SELECT username, role, resident_id, via, ip FROM resident_access_log ORDER BY id"
    )
    assert [(r["username"], r["role"], r["resident_id"], r["via"], r["ip"]) for r in rows] == [
        ("op", "operator", world.wang_id, "api", "127.0.0.1"),
        ("boss", "admin", world.zhang_id, "api", "127.0.0.1"),
    ]


async def test_only_an_admin_may_reveal_the_id_number(http: aiohttp.ClientSession, world: World) -> None:
    path = f"/api/v1/residents/{world.wang_id}"
    status, body = await get(http, world, path, reveal="id_number")
    assert status == 403
    assert body["error"]["code"] == "forbidden"
    status, body = await get(http, world, path, token=world.admin)
    assert (status, "id_number" in body) == (200, False)
    status, body = await get(http, world, path, token=world.admin, reveal="id_number")
    assert status == 200
    assert body["id_number"] == WANG
    status, body = await get(http, world, path, token=world.admin, reveal="everything")
    assert (status, body["error"]["field"]) == (400, "reveal")


async def test_absent_resident_is_404_json(http: aiohttp.ClientSession, world: World) -> None:
    for path in (
        f"/api/v1/residents/{world.zhang_id + 100}",
        "/api/v1/residents/99999999999999999999999",
        "/api/v1/residents/abc",
        f"/api/v1/providers/{max(world.provider_ids) + 1}",
    ):
        status, body = await get(http, world, path)
        assert status == 404, path
        assert body["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"offset": "-3"}, "offset"),
        ({"phone": "12a"}, "phone"),
        ({"community": "不存在社区"}, "community"),
        ({"community": "999999"}, "community"),
        ({"q": "x" * 101}, "q"),
        ({"q": "王\x00"}, "q"),
    ],
)
async def test_bad_query_values_are_400(
    http: aiohttp.ClientSession, world: World, params: dict[str, str], field: str
) -> None:
    status, body = await get(http, world, "/api/v1/residents", **params)
    assert status == 400
    assert body["error"]["field"] == field
    assert body["error"]["message"].startswith(field + ":")


async def test_providers_filtered_and_paged(http: aiohttp.ClientSession, world: World) -> None:
    async def names(**params: str) -> list[str]:
        status, body = await get(http, world, "/api/v1/providers", **params)
        assert status == 200
        return [p["name"] for p in body["items"]]

    assert await names() == ["康乐家政1", "康乐家政2", "康乐家政3"]
    assert await names(status="suspended") == ["康乐家政3"]
    assert await names(item="hk01") == ["康乐家政1", "康乐家政3"]
    assert await names(district="赛罕区") == ["康乐家政2", "康乐家政3"]
    assert await names(district="150102", item="HK02") == ["康乐家政1"]
    assert await names(district=str(world.geo.saihan), status="active") == ["康乐家政2"]
    status, body = await get(http, world, "/api/v1/providers", limit="2", offset="2")
    assert (len(body["items"]), body["total"]) == (1, 3)

    for params, field in [
        ({"status": "sleeping"}, "status"),
        ({"item": "XX99"}, "item"),
        ({"district": "火星区"}, "district"),
        ({"limit": "1000"}, "limit"),
    ]:
        status, body = await get(http, world, "/api/v1/providers", **params)
        assert (status, body["error"]["field"]) == (400, field)


async def test_provider_card(http: aiohttp.ClientSession, world: World) -> None:
    status, body = await get(http, world, f"/api/v1/providers/{world.provider_ids[0]}")
    assert status == 200
    assert body["licence_no"] == licence_number(1)
    assert body["sms"] == "+8613947102001"
    assert [(i["code"], i["price_fen"]) for i in body["items"]] == [("HK01", 4500), ("HK02", 5000)]
    assert body["areas"] == [
        {"district_id": world.geo.xincheng, "district": "新城区", "community_id": None, "community": None}
    ]


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


async def test_openapi_declares_the_routes(http: aiohttp.ClientSession, world: World) -> None:
    async with http.get(world.url + "/api/openapi.json") as resp:
        spec = await resp.json()
    for path in (
        "/api/v1/residents",
        "/api/v1/residents/{id}",
        "/api/v1/providers",
        "/api/v1/providers/{id}",
    ):
        operation = spec["paths"][path]["get"]
        assert {"200", "401"} <= set(operation["responses"]), path
    schemas = spec["components"]["schemas"]
    for ref in _refs(spec):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref

    _, card = await get(http, world, f"/api/v1/residents/{world.wang_id}")
    assert set(schemas["ResidentCard"]["required"]) <= set(card)
    assert set(card) <= set(schemas["ResidentCard"]["properties"])
    _, listing = await get(http, world, "/api/v1/providers")
    assert set(listing["items"][0]) == set(schemas["Provider"]["properties"])
