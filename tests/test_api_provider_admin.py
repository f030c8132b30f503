"""Registering, editing, suspending and reactivating providers over HTTP, through the real service."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from dispatch.service import Service
from tests.registry_api import Desk, fields_of, open_desk
from tests.registry_seed import licence_number


@pytest.fixture
async def desk(service: Service) -> AsyncIterator[Desk]:
    async with aiohttp.ClientSession() as http:
        yield await open_desk(service, http)


def new_provider(n: int = 1, **overrides: Any) -> dict[str, Any]:
    return {
        "licence_no": licence_number(n),
        "name": f"康乐家政{n}",
        "contact_name": "李经理",
        "phone": "0471-6912001",
        "sms": f"1394710200{n}",
        "address": "新城区海拉尔东路1号",
        "base_lat": 40.85,
        "base_lon": 111.70,
        "capacity": 4,
        "items": [{"code": "HK01", "price_fen": 4500}, {"code": "hk02"}],
        "areas": ["新城区", "赛罕区/大学西路街道/幸福社区"],
        "reason": "签约加盟",
        **overrides,
    }


async def create(desk: Desk, n: int = 1, **overrides: Any) -> dict[str, Any]:
    status, body = await desk.call("POST", "/api/v1/providers", body=new_provider(n, **overrides))
    assert status == 201, body
    return body  # type: ignore[no-any-return]


async def test_admin_registers_a_provider(desk: Desk) -> None:
    async with desk.http.post(
        desk.url + "/api/v1/providers",
        json=new_provider(licence_no=" " + licence_number(1).lower() + " "),
        headers={"Authorization": f"Bearer {desk.admin}"},
    ) as resp:
        assert resp.status == 201
        card = await resp.json()
        assert resp.headers["Location"] == f"/api/v1/providers/{card['id']}"
    assert card["licence_no"] == licence_number(1)
    assert (card["sms"], card["phone"]) == ("+8613947102001", "+864716912001")
    assert (card["status"], card["capacity"], card["base_lat"]) == ("active", 4, 40.85)
    # HK02 without a price is offered at the catalogue's list price
    assert [(i["code"], i["price_fen"]) for i in card["items"]] == [("HK01", 4500), ("HK02", 5000)]
    assert [(a["district"], a["community"]) for a in card["areas"]] == [
        ("新城区", None),
        ("赛罕区", "幸福社区"),
    ]
    assert (card["rating"], card["acceptance_rate"], card["median_response_seconds"]) == (None, None, None)

    status, fetched = await desk.call("GET", f"/api/v1/providers/{card['id']}", token=desk.operator)
    assert (status, fetched) == (200, card)
    [event] = await desk.events("provider", card["id"])
    assert (event["kind"], event["actor"], event["to_state"], event["reason"]) == (
        "provider.created",
        "user:boss",
        "active",
        "签约加盟",
    )


async def test_areas_by_id_and_items_at_list_price(desk: Desk) -> None:
    card = await create(
        desk,
        areas=[{"district_id": desk.geo.saihan}, {"community_id": desk.geo.haidong}, "150102"],
        items=[{"code": "LC01", "price_fen": None}],
    )
    assert [(a["district_id"], a["community_id"]) for a in card["areas"]] == [
        (desk.geo.xincheng, None),
        (desk.geo.xincheng, desk.geo.haidong),
        (desk.geo.saihan, None),
    ]
    assert [(i["code"], i["price_fen"]) for i in card["items"]] == [("LC01", 6000)]


async def test_a_licence_number_is_registered_once(desk: Desk) -> None:
    first = await create(desk)
    status, body = await desk.call("POST", "/api/v1/providers", body=new_provider(name="另一家"))
    assert status == 409
    assert (body["error"]["code"], body["error"]["id"]) == ("exists", first["id"])
    assert await desk.pool.fetchval("SELECT count(*) FROM providers") == 1
    assert len(await desk.events("provider", first["id"])) == 1


async def test_every_bad_field_is_named_in_one_400(desk: Desk) -> None:
    bad_check_character = licence_number(1)[:-1] + ("0" if licence_number(1)[-1] != "0" else "1")
    status, body = await desk.call(
        "POST",
        "/api/v1/providers",
        body=new_provider(
            licence_no=bad_check_character,
            sms="12345",
            phone="not a phone",
            capacity=-1,
            items=[{"code": "XX99"}, {"code": "HK01"}],
            areas=["火星区", "新城区"],
        ),
    )
    assert status == 400
    assert fields_of(body) == {"licence_no", "sms", "phone", "capacity", "items", "areas"}
    reasons = {f["field"]: f["reason"] for f in body["error"]["fields"]}
    assert "check character" in reasons["licence_no"]
    assert "XX99" in reasons["items"]
    assert "火星区" in reasons["areas"]
    assert "0 to 10000" in reasons["capacity"]
    # the masked number only: a phone number never comes back whole in an error
    assert "12345" not in json.dumps(body, ensure_ascii=False)
    assert await desk.pool.fetchval("SELECT count(*) FROM providers") == 0
    assert await desk.pool.fetchval("SELECT count(*) FROM events") == 0


async def test_shape_errors_are_named_with_their_place(desk: Desk) -> None:
    status, body = await desk.call(
        "POST",
        "/api/v1/providers",
        body={
            "licence_no": licence_number(1),
            "name": 7,
            "sms": "13947102001",
            "capcity": 3,
            "base_lat": 40.8,
            "items": [{"code": "HK01", "price_fen": -5}, "HK02", {"code": "HK01"}, {"code": "HK01"}],
            "areas": [{"district_id": 999}, {"street_id": 1}, 12, "\x00"],
        },
    )
    assert status == 400
    assert fields_of(body) == {
        "name",
        "capcity",
        "base_lon",
        "items[0].price_fen",
        "items[1]",
        "items",
        "areas[0]",
        "areas[1]",
        "areas[2]",
        "areas[3]",
    }


@pytest.mark.parametrize("body", ["[]", "not json", '"x"', ""])
async def test_a_body_that_is_no_object_is_400(desk: Desk, body: str) -> None:
    async with desk.http.post(
        desk.url + "/api/v1/providers", data=body, headers={"Authorization": f"Bearer {desk.admin}"}
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["field"] == "body"


async def test_edit_changes_only_the_fields_given(desk: Desk) -> None:
    card = await create(desk)
    path = f"/api/v1/providers/{card['id']}"
    status, edited = await desk.call(
        "PATCH",
        path,
        body={"name": "康乐家政新城店", "capacity": 2, "areas": ["赛罕区"], "reason": "合同变更"},
    )
    assert status == 200
    assert (edited["name"], edited["capacity"]) == ("康乐家政新城店", 2)
    assert [a["district"] for a in edited["areas"]] == ["赛罕区"]
    unchanged = {k: v for k, v in card.items() if k not in {"name", "capacity", "areas", "updated_at"}}
    assert {k: edited[k] for k in unchanged} == unchanged
    assert edited["updated_at"] > card["updated_at"]
    created, updated = await desk.events("provider", card["id"])
    assert created["kind"] == "provider.created"
    assert (updated["kind"], updated["actor"], updated["reason"]) == (
        "provider.updated",
        "user:boss",
        "合同变更",
    )
    assert updated["data"]["fields"] == ["name", "capacity", "areas"]

    # null sets a field back to its default: no phone, no base
    status, cleared = await desk.call("PATCH", path, body={"phone": None, "base_lat": None, "base_lon": None})
    assert status == 200
    assert (cleared["phone"], cleared["base_lat"], cleared["base_lon"]) == (None, None, None)
    fields = (await desk.events("provider", card["id"]))[-1]["data"]["fields"]
    assert fields == ["phone", "base_lat", "base_lon"]


async def test_the_same_patch_twice_changes_nothing_the_second_time(desk: Desk) -> None:
    card = await create(desk)
    path = f"/api/v1/providers/{card['id']}"
    patch = {"contact_name": "王经理", "sms": "139 4710 2009", "items": [{"code": "HK02"}, {"code": "HK01"}]}
    status, first = await desk.call("PATCH", path, body=patch)
    assert status == 200
    assert first["sms"] == "+8613947102009"
    status, second = await desk.call("PATCH", path, body=patch)
    assert (status, second) == (200, first)
    assert [e["kind"] for e in await desk.events("provider", card["id"])] == [
        "provider.created",
        "provider.updated",
    ]
    # the item at its list price, named with that price, is the same offer: still nothing to change
    status, third = await desk.call(
        "PATCH",
        path,
        body={"items": [{"code": "HK01", "price_fen": 4000}, {"code": "HK02", "price_fen": 5000}]},
    )
    assert (status, third["updated_at"]) == (200, first["updated_at"])
    assert len(await desk.events("provider", card["id"])) == 2
    status, empty = await desk.call("PATCH", path, body={})
    assert (status, empty) == (200, first)


async def test_a_bad_edit_changes_nothing(desk: Desk) -> None:
    card = await create(desk)
    path = f"/api/v1/providers/{card['id']}"
    status, body = await desk.call(
        "PATCH",
        path,
        body={
            "name": "改名",
            "sms": "110",
            "items": [{"code": "ZZ01"}],
            "areas": ["火星区"],
            "licence_no": "x",
        },
    )
    assert status == 400
    assert fields_of(body) == {"sms", "items", "areas", "licence_no"}
    _, after = await desk.call("GET", path)
    assert after == card
    assert len(await desk.events("provider", card["id"])) == 1


async def test_only_an_admin_registers_or_edits(desk: Desk) -> None:
    card = await create(desk)
    for token in (desk.operator, desk.supervisor):
        status, body = await desk.call("POST", "/api/v1/providers", token=token, body=new_provider(2))
        assert (status, body["error"]["code"]) == (403, "forbidden")
        status, body = await desk.call(
            "PATCH", f"/api/v1/providers/{card['id']}", token=token, body={"name": "x"}
        )
        assert (status, body["error"]["code"]) == (403, "forbidden")
    status, body = await desk.call(
        "POST", f"/api/v1/providers/{card['id']}/suspend", token=desk.operator, body={"reason": "投诉"}
    )
    assert (status, body["error"]["code"]) == (403, "forbidden")
    async with desk.http.post(desk.url + "/api/v1/providers", json=new_provider(2)) as resp:
        assert resp.status == 401
    assert await desk.pool.fetchval("SELECT count(*) FROM providers") == 1
    assert len(await desk.events("provider", card["id"])) == 1


async def test_unknown_provider_is_404(desk: Desk) -> None:
    for method, path, body in (
        ("PATCH", "/api/v1/providers/999", {"name": "x"}),
        ("POST", "/api/v1/providers/999/suspend", {"reason": "x"}),
        ("POST", "/api/v1/providers/999/reactivate", {}),
        ("PATCH", "/api/v1/providers/99999999999999999999999", {}),
    ):
        status, answer = await desk.call(method, path, body=body)
        assert (status, answer["error"]["code"]) == (404, "not_found"), path


async def test_suspend_and_reactivate(desk: Desk) -> None:
    card = await create(desk)
    other = await create(desk, 2)
    path = f"/api/v1/providers/{card['id']}"

    status, body = await desk.call("POST", path + "/suspend", token=desk.supervisor, body={"reason": " "})
    assert (status, fields_of(body)) == (400, {"reason"})
    status, body = await desk.call("POST", path + "/suspend", token=desk.supervisor)
    assert (status, fields_of(body)) == (400, {"reason"})

    status, suspended = await desk.call(
        "POST", path + "/suspend", token=desk.supervisor, body={"reason": "三次投诉未处理"}
    )
    assert (status, suspended["status"]) == (200, "suspended")
    # what matching reads: only active providers are offered work
    assert await desk.pool.fetchval("SELECT status FROM providers WHERE id = $1", card["id"]) == "suspended"
    _, active = await desk.call("GET", "/api/v1/providers", params={"status": "active"})
    assert [p["id"] for p in active["items"]] == [other["id"]]

    status, body = await desk.call("POST", path + "/suspend", token=desk.supervisor, body={"reason": "再次"})
    assert (status, body["error"]["state"]) == (409, "suspended")

    status, back = await desk.call(
        "POST", path + "/reactivate", token=desk.supervisor, body={"reason": "已整改"}
    )
    assert (status, back["status"]) == (200, "active")
    status, body = await desk.call("POST", path + "/reactivate", token=desk.supervisor)
    assert (status, body["error"]["state"]) == (409, "active")

    events = [
        (e["kind"], e["actor"], e["from_state"], e["to_state"], e["reason"])
        for e in await desk.events("provider", card["id"])
    ]
    assert events == [
        ("provider.created", "user:boss", None, "active", "签约加盟"),
        ("provider.suspended", "user:sup", "active", "suspended", "三次投诉未处理"),
        ("provider.reactivated", "user:sup", "suspended", "active", "已整改"),
    ]


async def test_an_inactive_provider_is_revived_by_an_admin_only(desk: Desk) -> None:
    card = await create(desk)
    # deregistered (停用), as an import marks it
    await desk.pool.execute("UPDATE providers SET status = 'inactive' WHERE id = $1", card["id"])
    path = f"/api/v1/providers/{card['id']}"
    status, body = await desk.call("POST", path + "/suspend", token=desk.supervisor, body={"reason": "x"})
    assert (status, body["error"]["state"]) == (409, "inactive")
    status, body = await desk.call("POST", path + "/reactivate", token=desk.supervisor)
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, body = await desk.call(
        "POST", path + "/reactivate", token=desk.admin, body={"reason": "重新签约"}
    )
    assert (status, body["status"]) == (200, "active")


async def test_an_edit_keeps_a_suspension(desk: Desk) -> None:
    card = await create(desk)
    path = f"/api/v1/providers/{card['id']}"
    await desk.call("POST", path + "/suspend", body={"reason": "资质复核"})
    status, edited = await desk.call("PATCH", path, body={"capacity": 9})
    assert (status, edited["status"], edited["capacity"]) == (200, "suspended", 9)
