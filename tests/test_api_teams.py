"""Emergency teams over HTTP: register, list, read, edit, suspend, reactivate; a suspended one is not sent."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from dispatch.alerts import AlertKind, AlertSource, insert_or_join_alert
from dispatch.service import Service
from dispatch.team_choice import rank_teams
from tests import factories
from tests.registry_api import Desk, fields_of, open_desk

TZ = ZoneInfo("Asia/Shanghai")


@pytest.fixture
async def desk(service: Service) -> AsyncIterator[Desk]:
    async with aiohttp.ClientSession() as http:
        yield await open_desk(service, http)


def new_team(code: str = "XC01", **overrides: Any) -> dict[str, Any]:
    return {
        "code": code,
        "name": "新城区应急服务一队",
        "phone": "0471-6955001",
        "base_lat": 40.86,
        "base_lon": 111.67,
        "address": "新城区海拉尔东路9号",
        "districts": ["新城区", "150105"],
        "members": [
            {"name": "钱队员", "phone": "13947103002"},
            {"name": "赵队长", "phone": "+86 139 4710 3001", "role": "队长"},
        ],
        "roster": [
            {"weekday": 5, "starts": "20:00", "ends": "08:00"},
            {"weekday": 1, "starts": "08:00", "ends": "20:00"},
        ],
        "reason": "新组建",
        **overrides,
    }


async def create(desk: Desk, code: str = "XC01", **overrides: Any) -> dict[str, Any]:
    status, body = await desk.call("POST", "/api/v1/teams", body=new_team(code, **overrides))
    assert status == 201, body
    return body  # type: ignore[no-any-return]


async def test_admin_registers_a_team(desk: Desk) -> None:
    card = await create(desk, "xc01")
    assert (card["code"], card["status"], card["phone"]) == ("XC01", "active", "+864716955001")
    assert card["districts"] == [
        {"id": desk.geo.xincheng, "name": "新城区"},
        {"id": desk.geo.saihan, "name": "赛罕区"},
    ]
    # the leader first, whatever the order given
    assert [(m["name"], m["role"], m["phone"]) for m in card["members"]] == [
        ("赵队长", "leader", "+8613947103001"),
        ("钱队员", "member", "+8613947103002"),
    ]
    assert card["roster"] == [
        {"weekday": 1, "starts": "08:00", "ends": "20:00"},
        {"weekday": 5, "starts": "20:00", "ends": "08:00"},
    ]
    status, fetched = await desk.call("GET", f"/api/v1/teams/{card['id']}", token=desk.operator)
    assert (status, fetched) == (200, card)
    [event] = await desk.events("team", card["id"])
    assert (event["kind"], event["actor"], event["to_state"], event["reason"]) == (
        "team.created",
        "user:boss",
        "active",
        "新组建",
    )

    status, body = await desk.call("POST", "/api/v1/teams", body=new_team("XC01", name="另一队"))
    assert (status, body["error"]["code"], body["error"]["id"]) == (409, "exists", card["id"])


async def test_teams_are_listed_by_status_and_district(desk: Desk) -> None:
    xc = await create(desk, "XC01")
    sh = await create(desk, "SH01", districts=[desk.geo.saihan])
    await desk.call("POST", f"/api/v1/teams/{sh['id']}/suspend", body={"reason": "车辆维修"})

    async def codes(**params: str) -> list[str]:
        status, body = await desk.call("GET", "/api/v1/teams", token=desk.operator, params=params)
        assert status == 200, body
        return [t["code"] for t in body["items"]]

    assert await codes() == ["SH01", "XC01"]
    assert await codes(status="active") == ["XC01"]
    assert await codes(district="新城区") == ["XC01"]
    assert await codes(district=str(desk.geo.saihan)) == ["SH01", "XC01"]
    assert await codes(limit="1", offset="1") == ["XC01"]
    _, page = await desk.call("GET", "/api/v1/teams", params={"limit": "1"})
    assert (page["total"], page["items"][0]["districts"]) == (2, [{"id": desk.geo.saihan, "name": "赛罕区"}])
    assert page["items"][0]["status"] == "suspended"
    for params, field in (({"status": "asleep"}, "status"), ({"district": "火星区"}, "district")):
        status, body = await desk.call("GET", "/api/v1/teams", params=params)
        assert (status, body["error"]["field"]) == (400, field)
    status, body = await desk.call("GET", f"/api/v1/teams/{xc['id'] + sh['id']}")
    assert (status, body["error"]["code"]) == (404, "not_found")


async def test_every_bad_team_field_is_named(desk: Desk) -> None:
    status, body = await desk.call(
        "POST",
        "/api/v1/teams",
        body=new_team(
            "X 1",
            phone="12",
            base_lon=None,
            districts=["火星区", 99, True],
            members=[
                {"name": "赵队长", "phone": "13947103001", "role": "队长"},
                {"name": "", "phone": "123", "role": "captain"},
                {"name": "孙", "phone": "139-4710-3001"},
                "钱",
            ],
            roster=[
                {"weekday": 8, "starts": "08:00", "ends": "20:00"},
                {"weekday": 2, "starts": "25:00", "ends": "8"},
                {"weekday": 3, "starts": "08:00", "ends": "12:00"},
                {"weekday": 3, "starts": "08:00", "ends": "20:00"},
            ],
            colour="red",
        ),
    )
    assert status == 400
    assert fields_of(body) == {
        "code",
        "phone",
        "base_lon",
        "districts",
        "districts[2]",
        "members[1].name",
        "members[1].phone",
        "members[1].role",
        "members",
        "members[3]",
        "roster[0].weekday",
        "roster[1].starts",
        "roster[1].ends",
        "roster",
        "colour",
    }
    reasons = [f["reason"] for f in body["error"]["fields"] if f["field"] == "districts"]
    assert any("火星区" in r for r in reasons)
    assert any("99" in r for r in reasons)
    assert await desk.pool.fetchval("SELECT count(*) FROM emergency_teams") == 0


async def test_edit_and_the_same_edit_again(desk: Desk) -> None:
    card = await create(desk)
    path = f"/api/v1/teams/{card['id']}"
    patch = {
        "name": "新城区应急服务队",
        "members": [{"name": "赵队长", "phone": "13947103001", "role": "leader"}],
        "roster": [{"weekday": day, "starts": "00:00", "ends": "00:00"} for day in range(1, 8)],
        "reason": "人员调整",
    }
    status, edited = await desk.call("PATCH", path, body=patch)
    assert status == 200
    assert edited["name"] == "新城区应急服务队"
    assert [m["name"] for m in edited["members"]] == ["赵队长"]
    assert len(edited["roster"]) == 7
    assert (edited["districts"], edited["phone"], edited["base_lat"]) == (
        card["districts"],
        card["phone"],
        card["base_lat"],
    )
    status, again = await desk.call("PATCH", path, body=patch)
    assert (status, again) == (200, edited)
    events = await desk.events("team", card["id"])
    assert [(e["kind"], e["reason"]) for e in events] == [
        ("team.created", "新组建"),
        ("team.updated", "人员调整"),
    ]
    assert events[1]["data"]["fields"] == ["name", "members", "roster"]

    status, body = await desk.call("PATCH", path, body={"districts": ["火星区"], "code": "XC09"})
    assert (status, fields_of(body)) == (400, {"districts", "code"})
    status, moved = await desk.call("PATCH", path, body={"districts": [desk.geo.saihan], "base_lat": 40.8})
    assert (status, [d["name"] for d in moved["districts"]], moved["base_lat"]) == (200, ["赛罕区"], 40.8)
    assert (await desk.events("team", card["id"]))[-1]["data"]["fields"] == ["base_lat", "districts"]


async def test_roles(desk: Desk) -> None:
    card = await create(desk)
    path = f"/api/v1/teams/{card['id']}"
    for token in (desk.operator, desk.supervisor):
        status, body = await desk.call("POST", "/api/v1/teams", token=token, body=new_team("XC02"))
        assert (status, body["error"]["code"]) == (403, "forbidden")
        status, body = await desk.call("PATCH", path, token=token, body={"name": "x"})
        assert (status, body["error"]["code"]) == (403, "forbidden")
    status, body = await desk.call("POST", path + "/suspend", token=desk.operator, body={"reason": "x"})
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, body = await desk.call(
        "POST", path + "/suspend", token=desk.supervisor, body={"reason": "全员培训"}
    )
    assert (status, body["status"]) == (200, "suspended")
    status, body = await desk.call("POST", path + "/reactivate", token=desk.operator)
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert [e["kind"] for e in await desk.events("team", card["id"])] == ["team.created", "team.suspended"]


async def test_a_suspended_team_drops_out_of_team_choice(desk: Desk) -> None:
    night = dt.datetime(2026, 11, 24, 2, 0, tzinfo=TZ)
    async with desk.pool.acquire() as conn:
        resident = await factories.resident(conn, community_id=desk.geo.haidong, lat=40.85, lon=111.70)
        raised = await insert_or_join_alert(
            conn,
            source=AlertSource.ALARM,
            kind=AlertKind.SOS,
            resident_id=resident,
            device_id=None,
            context={},
            actor="test",
            at=night,
        )
    all_week = [{"weekday": d, "starts": "00:00", "ends": "00:00"} for d in range(1, 8)]
    near = await create(desk, "NEAR", base_lat=40.851, base_lon=111.701, roster=all_week)
    await create(desk, "FAR", base_lat=40.80, base_lon=111.60, roster=all_week)

    async def ranked() -> list[tuple[str, bool]]:
        async with desk.pool.acquire() as conn:
            return [(o.code, o.eligible) for o in await rank_teams(conn, raised.alert.id, night, TZ)]

    assert await ranked() == [("NEAR", True), ("FAR", True)]
    status, _ = await desk.call(
        "POST", f"/api/v1/teams/{near['id']}/suspend", token=desk.supervisor, body={"reason": "车辆故障"}
    )
    assert status == 200
    assert await ranked() == [("FAR", True)]
    status, _ = await desk.call("POST", f"/api/v1/teams/{near['id']}/reactivate", token=desk.supervisor)
    assert status == 200
    assert await ranked() == [("NEAR", True), ("FAR", True)]
    events = [(e["kind"], e["from_state"], e["to_state"]) for e in await desk.events("team", near["id"])]
    assert events == [
        ("team.created", None, "active"),
        ("team.suspended", "active", "suspended"),
        ("team.reactivated", "suspended", "active"),
    ]


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


async def test_openapi_describes_every_registry_route(desk: Desk) -> None:
    async with desk.http.get(desk.url + "/api/openapi.json") as resp:
        spec = await resp.json()
    paths, schemas = spec["paths"], spec["components"]["schemas"]
    expected = {
        "/api/v1/providers": {"get", "post"},
        "/api/v1/providers/{id}": {"get", "patch"},
        "/api/v1/providers/{id}/suspend": {"post"},
        "/api/v1/providers/{id}/reactivate": {"post"},
        "/api/v1/teams": {"get", "post"},
        "/api/v1/teams/{id}": {"get", "patch"},
        "/api/v1/teams/{id}/suspend": {"post"},
        "/api/v1/teams/{id}/reactivate": {"post"},
    }
    for path, methods in expected.items():
        assert set(paths[path]) == methods, path
        for method in methods - {"get"}:
            operation = paths[path][method]
            assert {"200", "201"} & set(operation["responses"]), (path, method)
            assert {"400", "401", "403"} <= set(operation["responses"]), (path, method)
            [body] = operation["requestBody"]["content"].values()
            assert body["schema"]["$ref"].removeprefix("#/components/schemas/") in schemas
    for ref in _refs(spec):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    assert set(schemas["ProviderCreate"]["properties"]) == {
        "licence_no",
        *schemas["ProviderEdit"]["properties"],
    }
    assert set(schemas["TeamCreate"]["properties"]) == {"code", *schemas["TeamEdit"]["properties"]}

    team = await create(desk)
    assert set(team) == set(schemas["TeamCard"]["properties"])
    _, listing = await desk.call("GET", "/api/v1/teams")
    assert set(listing["items"][0]) == set(schemas["Team"]["properties"])
    status, body = await desk.call("POST", "/api/v1/teams", body={"code": "x"})
    assert status == 400
    assert set(body["error"]) == set(schemas["InvalidRecord"]["properties"]["error"]["properties"])
