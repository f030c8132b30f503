"""`GET /api/v1/residents/{id}/timeline`: one resident's calls, care calls, alarms, alert and order
events and SMS (own phones and family), in time order, paged by cursor without loss or repeats."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from dispatch.alert_desk import Actor, AlertDesk
from dispatch.alerts import AlertKind, AlertSource
from dispatch.database import Conn
from dispatch.resident_timeline import BadCursor, TimelineCursor
from dispatch.service import Service
from dispatch.users import Role, create_user, issue_token
from tests import factories
from tests.call_rows import call_row
from tests.helpers import stop_deadlines
from tests.order_rows import HOME, T0, catalogue, provider
from tests.order_world import Lane, make_lane

OWN = "+8613800138000"
DAUGHTER = "+8613911110001"
OTHER = "+8613800138111"
NEAR_SMS = "+8613500000001"


@dataclasses.dataclass
class World:
    http: aiohttp.ClientSession
    lane: Lane
    resident: int
    other: int
    order: int
    alert: int
    call: int


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


async def sms_row(conn: Conn, *, direction: str, phone: str, body: str, when: dt.datetime) -> int:
    inbound = direction == "in"
    return int(
        await conn.fetchval(
            """INSERT INTO sms_messages (direction, to_e164, from_e164, body, segments, status, purpose,
                   idempotency_key, created_at)
               VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8) RETURNING id""",
            direction,
            "+8612349" if inbound else phone,
            phone if inbound else None,
            body,
            "received" if inbound else "sent",
            "reply" if inbound else "family",
            None if inbound else uuid.uuid4().hex,
            when,
        )
    )


@pytest.fixture
async def world(service: Service, pool: asyncpg.Pool) -> AsyncIterator[World]:
    assert service.runtime is not None
    # the alert's escalation steps, dated now, would top the timeline
    await stop_deadlines(service)
    lane = make_lane(service.runtime.config, pool)
    async with pool.acquire() as conn:
        user = await create_user(conn, "wangfang", Role.OPERATOR)
        token = await issue_token(conn, user.id)
        await catalogue(conn)
        district, community = await factories.community(conn, lat=HOME[0], lon=HOME[1])
        resident = await factories.resident(
            conn, community_id=community, phone=OWN, lat=HOME[0], lon=HOME[1], contacts=[("李娜", DAUGHTER)]
        )
        other = await factories.resident(conn, community_id=community, name="张桂兰", phone=OTHER)
        await provider(conn, name="近邻家政", sms=NEAR_SMS, districts=(district,))
        call = await call_row(conn, arrived=at(0), wait=12, talk=95, resident_id=resident, caller=OWN)
    lane.clock.now = at(1)
    order = await lane.order(resident)
    lane.clock.now = at(3)
    await lane.reply(
        NEAR_SMS, f"1 {await lane.code(order.id, order_provider := await _offered(lane, order.id))}"
    )
    assert order_provider
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO alarms (source, sender, resident_id, kind, qualifier, code, payload, received_at,
                                  outcome)
               VALUES ('dc09', 'dc09:000001', $1, 'fall', 'new', 'FA', '', $2, 'alert'),
                      ('dc09', 'dc09:000001', $1, 'heartbeat', 'status', 'NULL', '', $3, 'heartbeat')""",
            resident,
            at(5),
            at(6),
        )
    desk = AlertDesk(lane.runtime)
    lane.clock.now = at(10)
    raised = await desk.raise_and_publish(
        source=AlertSource.OPERATOR, kind=AlertKind.FALL, resident_id=resident, actor=Actor.user("wangfang")
    )
    lane.clock.now = at(11)
    await desk.acknowledge(raised.alert.id, Actor.user("wangfang"), real=True)
    async with pool.acquire() as conn:
        # the family SMS was stamped by the database clock; put it where the acknowledgement was
        moved = await conn.execute(
            "UPDATE sms_messages SET created_at = $1 WHERE to_e164 = $2 AND purpose = 'family'",
            at(11),
            DAUGHTER,
        )
        assert moved == "UPDATE 1"
        await conn.execute(
            """INSERT INTO call_attempts (purpose, server, action_id, target, resident_id, requested_by,
                   context_id, state, result, reason_code, created_at, finished_at, timeout_at)
               VALUES ('care_call', 'pbx1', 'care-1', $1, $2, 'care_plan:1', $3, 'finished', 'no_answer', 3,
                       $4, $5, $5)""",
            OWN,
            resident,
            uuid.uuid4(),
            at(20),
            at(20.5),
        )
        await sms_row(conn, direction="in", phone=OWN, body="谢谢你们", when=at(30))
        # the other resident's call and SMS are not this resident's
        await call_row(conn, arrived=at(15), wait=3, resident_id=other, caller=OTHER)
        await sms_row(conn, direction="out", phone=OTHER, body="张桂兰的短信", when=at(16))
    async with aiohttp.ClientSession(
        base_url=service.url, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        yield World(http, lane, resident, other, order.id, raised.alert.id, call)


async def _offered(lane: Lane, order_id: int) -> int:
    offers = await lane.offers(order_id)
    return int(offers[0]["provider_id"])


async def fetch(http: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    async with http.get(path) as resp:
        return resp.status, await resp.json()


def brief(items: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return [(item["at"][11:19], item["kind"], item["subject_id"]) for item in items]


async def test_one_list_newest_first_with_summaries_and_links(world: World) -> None:
    status, body = await fetch(world.http, f"/api/v1/residents/{world.resident}/timeline")
    assert status == 200
    assert (body["resident_id"], body["order"], body["next"]) == (world.resident, "newest", None)
    items = body["items"]
    sms = [i for i in items if i["kind"] == "sms"]
    family_sms, reply_sms = sms[1]["subject_id"], sms[0]["subject_id"]
    attempt = next(i["subject_id"] for i in items if i["kind"] == "call_attempt")
    alarm = next(i["subject_id"] for i in items if i["kind"] == "alarm")
    a, o = world.alert, world.order
    # T0 is 01:00 UTC; the family SMS and the acknowledgement share 01:11:00 (SMS sorts after events)
    assert brief(items) == [
        ("01:30:00", "sms", reply_sms),
        ("01:20:00", "call_attempt", attempt),
        ("01:11:00", "sms", family_sms),
        ("01:11:00", "alert.family_notified", a),
        ("01:11:00", "alert.acknowledged", a),
        ("01:10:00", "alert.raised", a),
        ("01:05:00", "alarm", alarm),
        ("01:03:00", "order.accepted", o),
        ("01:01:00", "order.offered", o),
        ("01:01:00", "order.created", o),
        ("01:00:00", "call", world.call),
    ]
    by_kind = {i["kind"]: i for i in items}
    call = by_kind["call"]
    assert call["summary"] == {
        "zh": "来电，等待12秒后由坐席8001接听，通话1分35秒",
        "en": "Inbound call answered by 8001 after 12 s, talked 1 min 35 s",
    }
    assert (call["link"], call["source"], call["to"]) == (f"/api/v1/calls/{world.call}", "call", "answered")
    assert (call["data"]["number"], call["data"]["wait_seconds"]) == (OWN, 12)
    assert by_kind["order.accepted"]["summary"] == {"zh": f"工单#{o}：已接单", "en": f"Order #{o}: accepted"}
    assert by_kind["order.accepted"]["link"] == f"/api/v1/orders/{o}"
    assert (by_kind["order.accepted"]["from"], by_kind["order.accepted"]["to"]) == ("offered", "accepted")
    assert by_kind["alert.raised"]["summary"]["zh"] == f"紧急求助#{a}：已触发"
    assert by_kind["alarm"]["summary"] == {"zh": "报警：跌倒", "en": "Alarm: fall"}
    assert by_kind["alarm"]["link"] is None
    assert by_kind["call_attempt"]["summary"] == {"zh": "关爱电话：无人接听", "en": "Care call: no answer"}
    assert by_kind["call_attempt"]["link"] == f"/api/v1/calls/attempts/{attempt}"
    assert sms[0]["summary"] == {"zh": "老人来短信：谢谢你们", "en": "SMS from the resident: 谢谢你们"}
    # the service's SMS worker may have sent it already
    assert sms[1]["summary"]["zh"].startswith(
        ("短信发给家属李娜（待发送）：【12349】", "短信发给家属李娜（已发送）：【12349】")
    )
    assert sms[1]["summary"]["en"].startswith(
        ("SMS to family contact 李娜 (queued)", "SMS to family contact 李娜 (sent)")
    )
    assert sms[1]["summary"]["zh"].endswith("…")  # the body cut to 40 characters
    assert len(sms[1]["summary"]["zh"]) == len("短信发给家属李娜（待发送）：") + 40
    assert sms[1]["data"]["to"] == DAUGHTER
    # nothing of the other resident, no heartbeat, no offer SMS to the provider
    assert all(i["data"].get("number") != OTHER and i["data"].get("to") != OTHER for i in items)
    assert all(i["data"].get("to") != NEAR_SMS for i in items)

    status, other = await fetch(world.http, f"/api/v1/residents/{world.other}/timeline")
    assert [(i["kind"], i["summary"]["en"]) for i in other["items"]] == [
        ("sms", "SMS to the resident (sent): 张桂兰的短信"),
        ("call", "Inbound call answered by 8001 after 3 s, talked 1 min 0 s"),
    ]


async def test_pages_by_cursor_in_both_directions(world: World) -> None:
    base = f"/api/v1/residents/{world.resident}/timeline"
    _, whole = await fetch(world.http, base)
    everything = brief(whole["items"])
    assert len(everything) == 11
    for order, expected in (("newest", everything), ("oldest", everything[::-1])):
        seen: list[tuple[str, str, int]] = []
        cursor = ""
        pages = 0
        while True:
            status, page = await fetch(world.http, f"{base}?limit=3&order={order}{cursor}")
            assert status == 200
            pages += 1
            seen += brief(page["items"])
            if page["next"] is None:
                break
            cursor = f"&after={page['next']}"
        assert seen == expected, order
        assert pages == 4  # 3 + 3 + 3 + 2

    since, until = "2026-11-24T09:05:00%2B08:00", "2026-11-24T01:11:00Z"
    status, window = await fetch(world.http, f"{base}?since={since}&until={until}")
    assert status == 200
    assert [k for _, k, _ in brief(window["items"])] == ["alert.raised", "alarm"]


async def test_bad_parameters_and_unknown_residents(world: World) -> None:
    base = f"/api/v1/residents/{world.resident}/timeline"
    for query, field in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("order=up", "order"),
        ("after=abc", "after"),
        ("after=1.9.1", "after"),
        ("after=999999999999999999.1.1", "after"),
        ("after=-99999999999999999.1.1", "after"),
        ("since=today", "since"),
        ("until=2026-11-24T09:00:00", "until"),
    ]:
        status, error = await fetch(world.http, f"{base}?{query}")
        assert (status, error["error"]["field"]) == (400, field), query
    for path in ("/api/v1/residents/987654/timeline", "/api/v1/residents/12345678901234567890/timeline"):
        status, error = await fetch(world.http, path)
        assert (status, error["error"]["code"]) == (404, "not_found")


def test_cursor_round_trip() -> None:
    cursor = TimelineCursor(dt.datetime(2026, 11, 24, 1, 11, 0, 123456, tzinfo=dt.UTC), 4, 77)
    assert TimelineCursor.decode(cursor.encode()) == cursor
    assert cursor.encode() == "1795482660123456.4.77"  # date -u -d "2026-11-24 01:11:00" +%s
    for bad in ("", "1.2", "1.6.1", "x.1.1", "1.1.99999999999999999999"):
        with pytest.raises(BadCursor):
            TimelineCursor.decode(bad)
