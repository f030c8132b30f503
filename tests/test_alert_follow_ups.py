"""One case file over real HTTP: follow-up work opened from a resolved alert in one action — a
follow-up call (a call task on the alert; no telephony here, so an operator is asked when it is
due) and a nursing visit (an order with the alert's id) — listed back from the alert.
"""

from __future__ import annotations

import datetime as dt

import aiohttp

from dispatch.alert_desk import Actor
from dispatch.alerts import AlertKind, AlertSource, Outcome
from dispatch.deadlines import fire_due_deadlines
from dispatch.service import Service
from dispatch.users import Role, create_user, issue_token
from tests import factories
from tests.order_rows import HOME, catalogue, provider


async def test_a_resolved_alert_opens_a_follow_up_call_and_a_nursing_visit(service: Service) -> None:
    runtime = service.runtime
    assert runtime is not None
    assert service.desk is not None
    async with runtime.pool.acquire() as conn:
        token = await issue_token(conn, (await create_user(conn, "wangfang", Role.OPERATOR)).id)
        await catalogue(conn)
        district, community = await factories.community(conn, lat=HOME[0], lon=HOME[1])
        resident = await factories.resident(conn, community_id=community, phone="+8613800138010")
        nurse = await provider(conn, name="中和护理", districts=(district,))
    raised = await service.desk.raise_and_publish(
        source=AlertSource.OPERATOR, kind=AlertKind.FALL, resident_id=resident, actor=Actor.user("wangfang")
    )
    alert_id = raised.alert.id
    await service.desk.acknowledge(alert_id, Actor.user("wangfang"))
    await service.desk.resolve(alert_id, Actor.user("wangfang"), outcome=Outcome.HANDLED_AT_HOME)
    base = f"/api/v1/alerts/{alert_id}/follow-ups"
    async with aiohttp.ClientSession(
        base_url=service.url, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        async with http.post(base) as resp:
            assert resp.status == 201, await resp.text()
            call = (await resp.json())["task"]
        async with http.post(base, json={"type": "nursing_visit", "item_code": "bath"}) as resp:
            assert resp.status == 201, await resp.text()
            order = (await resp.json())["order"]
        async with http.post(base, json={"type": "nursing_visit"}) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["field"] == "item_code"
        async with http.post(base, json={"due_at": "2099-01-01T08:00:00+08:00"}) as resp:
            assert resp.status == 400
        far = {"type": "repair", "window_start": "9999-12-31T23:00:00+00:00"}
        async with http.post(base, json=far) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["field"] == "window_start"
        async with http.post("/api/v1/alerts/999999/follow-ups") as resp:
            assert resp.status == 404
        async with http.get(base) as resp:
            listed = await resp.json()
    assert (call["reason"], call["alert_id"], call["state"], call["resident_id"]) == (
        "alert_follow_up",
        alert_id,
        "scheduled",
        resident,
    )
    assert (order["alert_id"], order["source"], order["state"]) == (alert_id, "alert", "offered")
    assert [c["id"] for c in listed["calls"]] == [call["id"]]
    assert [o["id"] for o in listed["orders"]] == [order["id"]]
    offered_to = await runtime.pool.fetchval(
        "SELECT provider_id FROM order_offers WHERE order_id = $1", order["id"]
    )
    assert offered_to == nurse
    kinds = await runtime.pool.fetch(
        "SELECT kind FROM events WHERE subject_type = 'alert' AND subject_id = $1 AND kind LIKE $2",
        alert_id,
        "alert.follow%",
    )
    assert [k["kind"] for k in kinds] == ["alert.follow_up_opened", "alert.follow_up_opened"]

    # when the call is due (the test config has no [[asterisk]]): an operator is asked to make it
    due = dt.datetime.fromisoformat(call["due_at"])
    await fire_due_deadlines(runtime.pool, service.deadline_handlers, due + dt.timedelta(seconds=1))
    notice = await runtime.pool.fetchrow(
        "SELECT subject_type, subject_id FROM notices WHERE kind = 'alert_follow_up.manual'"
    )
    assert notice is not None
    assert (notice["subject_type"], notice["subject_id"]) == ("alert", alert_id)
    attempts = await runtime.pool.fetch("SELECT subject_type, alert_id FROM call_attempts")
    assert [(a["subject_type"], a["alert_id"]) for a in attempts] == [("call_task", alert_id)]
