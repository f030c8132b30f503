"""Care plans (关爱服务): the next call computed by APScheduler's triggers and kept as a deadline row;
care calls through the AMI peer; an answer resets the count, N unanswered in a row raise an
inactivity alert; a restart in the middle neither loses the plan's next call nor fires the
missed ones in a burst; the API creates, lists, pauses and resumes plans with every try visible.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import aiohttp
import asyncpg

from dispatch.alert_desk import AlertDesk
from dispatch.call_task_steps import CallTaskSteps
from dispatch.call_tasks import TaskReason, tasks_of
from dispatch.care_plans import DUE, CarePlanDesk, CarePlanHooks, PlanFields, Schedule, register_care_plans
from dispatch.config import Config
from dispatch.deadlines import DeadlineHandlers, FireReport, fire_due_deadlines, pending_deadlines
from dispatch.runtime import Runtime
from dispatch.service import Service
from dispatch.users import Role, create_user, issue_token
from telephony.originate import Originator, register_call_attempts
from telephony.simulator import AmiPeer, replay
from tests import factories
from tests.ami_peer import ManualTime, asterisk_config, drained, recording, serving, up
from tests.helpers import FakeClock
from tests.order_rows import T0

PHONE = "+8613600136000"


@dataclasses.dataclass
class Care:
    runtime: Runtime
    clock: FakeClock
    handlers: DeadlineHandlers
    desk: CarePlanDesk

    async def fire(self, **after: float) -> FireReport:
        self.clock.advance(**after)
        report = await fire_due_deadlines(self.runtime.pool, self.handlers, self.clock.now)
        await self.runtime.bus.publish(*report.events)
        return report


def start(config: Config, pool: asyncpg.Pool, originator_of: Any, now: dt.datetime = T0) -> Care:
    """The care-plan lane as the service wires it: a fresh one is what a restarted process builds."""
    clock = FakeClock(now)
    runtime = Runtime(config=config, pool=pool, clock=clock)
    handlers = DeadlineHandlers()
    register_call_attempts(handlers)
    steps = CallTaskSteps(runtime, originator_of(runtime))
    steps.add(TaskReason.CARE_PLAN, CarePlanHooks(AlertDesk(runtime)))
    steps.register(handlers)
    register_care_plans(handlers, runtime)
    return Care(runtime, clock, handlers, CarePlanDesk(runtime))


def no_telephony(runtime: Runtime) -> Originator:
    return Originator(runtime, {})


async def resident(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        _, community = await factories.community(conn)
        return await factories.resident(conn, community_id=community, phone=PHONE)


async def test_weekly_plan_arms_its_next_call_in_local_time(config: Config, pool: asyncpg.Pool) -> None:
    care = start(config, pool, no_telephony)
    who = await resident(pool)
    # T0 is Tuesday 09:00 in Hohhot: Mondays and Thursdays at 10:30 local → Thursday 02:30 UTC
    plan = await care.desk.create(
        who, PlanFields(schedule=Schedule.WEEKLY, days=[1, 4], time_of_day=dt.time(10, 30)), "user:op"
    )
    assert plan.next_due_at == dt.datetime(2026, 11, 26, 2, 30, tzinfo=dt.UTC)
    async with pool.acquire() as conn:
        [due] = await pending_deadlines(conn, "care_plan", plan.id)
    assert (due.kind, due.due_at) == (DUE, plan.next_due_at)
    await care.fire(days=2, hours=1, minutes=30)  # the Thursday call
    await care.fire()
    async with pool.acquire() as conn:
        [task] = await tasks_of(conn, "care_plan", plan.id)
        [due] = await pending_deadlines(conn, "care_plan", plan.id)
    assert due.due_at == dt.datetime(2026, 11, 30, 2, 30, tzinfo=dt.UTC)  # the next Monday
    # no telephony: an operator is asked to make the call, and it does not count as unanswered
    assert (task.state.value, task.outcome) == ("operator", "telephony unavailable")
    notice = await pool.fetchval("SELECT kind FROM notices")
    assert notice == "care_plan.manual"
    assert await pool.fetchval("SELECT unanswered_in_a_row FROM care_plans") == 0


async def test_unanswered_calls_in_a_row_raise_an_inactivity_alert(
    config: Config, pool: asyncpg.Pool, peer: AmiPeer
) -> None:
    who = await resident(pool)
    no_answer = replay(recording("06-originate-failed-no-answer"))
    async with serving_for(config, pool, peer) as (care, server):
        plan = await care.desk.create(
            who, PlanFields(schedule=Schedule.INTERVAL, interval_seconds=86400, retry_seconds=600), "user:op"
        )
        assert plan.next_due_at == T0
        await care.fire()  # the slot: a task due now
        peer.play(no_answer)
        await care.fire()  # try 1
        for tries in (1, 2):
            await drained(peer, server)
            await care.fire(seconds=181)
            assert await pool.fetchval("SELECT unanswered_in_a_row FROM care_plans") == tries
            peer.play(no_answer)
            await care.fire(seconds=600)
        await drained(peer, server)
        await care.fire(seconds=181)
    alert = await pool.fetchrow("SELECT kind, source, resident_id, context FROM alerts")
    assert alert is not None
    assert (alert["kind"], alert["source"], alert["resident_id"]) == ("inactivity", "care_plan", who)
    assert alert["context"]["unanswered"] == 3
    async with pool.acquire() as conn:
        [task] = await tasks_of(conn, "care_plan", plan.id)
    assert (task.state.value, task.tries) == ("done", 3)
    assert task.outcome.startswith("inactivity alert ")
    assert await pool.fetchval("SELECT unanswered_in_a_row FROM care_plans") == 0
    assert sum(1 for a in peer.received if a["Action"] == "Originate") == 3


async def test_an_answer_resets_the_count(config: Config, pool: asyncpg.Pool, peer: AmiPeer) -> None:
    who = await resident(pool)
    async with serving_for(config, pool, peer) as (care, server):
        await care.desk.create(
            who, PlanFields(schedule=Schedule.INTERVAL, interval_seconds=86400, retry_seconds=600), "user:op"
        )
        await care.fire()
        peer.play(replay(recording("06-originate-failed-no-answer")))
        await care.fire()
        await drained(peer, server)
        await care.fire(seconds=181)
        assert await pool.fetchval("SELECT unanswered_in_a_row FROM care_plans") == 1
        peer.play(replay(recording("08-care-call-ivr-dtmf-userevent")))
        await care.fire(seconds=600)
        await drained(peer, server)
        await care.fire(seconds=181)
    row = await pool.fetchrow("SELECT unanswered_in_a_row, last_answered_at FROM care_plans")
    assert row is not None
    assert (row["unanswered_in_a_row"], row["last_answered_at"]) == (0, T0 + dt.timedelta(seconds=962))
    assert await pool.fetchval("SELECT count(*) FROM alerts") == 0


async def test_a_restart_keeps_the_next_call_and_skips_the_missed_ones(
    config: Config, pool: asyncpg.Pool
) -> None:
    """The process dies with the plan's next call pending and stays down for three days: the
    new process finds the deadline row, makes one call for the overdue slot (not three), and
    arms the next one after now."""
    who = await resident(pool)
    before = start(config, pool, no_telephony)
    plan = await before.desk.create(
        who,
        PlanFields(schedule=Schedule.INTERVAL, interval_seconds=86400, starts_at=T0 + dt.timedelta(hours=1)),
        "x",
    )
    assert plan.next_due_at == T0 + dt.timedelta(hours=1)
    after = start(config, pool, no_telephony, now=T0 + dt.timedelta(days=3, hours=2))
    report = await after.fire()
    assert report.kinds == [DUE]
    async with pool.acquire() as conn:
        [due] = await pending_deadlines(conn, "care_plan", plan.id)
    assert due.due_at == T0 + dt.timedelta(days=4, hours=1)
    await after.fire()
    async with pool.acquire() as conn:
        assert len(await tasks_of(conn, "care_plan", plan.id)) == 1


async def test_pausing_cancels_the_next_call_and_resuming_arms_it(config: Config, pool: asyncpg.Pool) -> None:
    care = start(config, pool, no_telephony)
    who = await resident(pool)
    plan = await care.desk.create(
        who, PlanFields(schedule=Schedule.WEEKLY, days=[2], time_of_day=dt.time(15, 0)), "user:op"
    )
    paused = await care.desk.set_active(plan.id, False, "user:op")
    assert paused.next_due_at is None
    assert (await care.fire(days=8)).fired == 0
    resumed = await care.desk.set_active(plan.id, True, "user:op")
    assert resumed.next_due_at == dt.datetime(2026, 12, 8, 7, 0, tzinfo=dt.UTC)  # Tuesday 15:00 local


class serving_for:
    """A care lane whose calls go through the AMI peer."""

    def __init__(self, config: Config, pool: asyncpg.Pool, peer: AmiPeer) -> None:
        self.config, self.pool, self.peer = config, pool, peer

    async def __aenter__(self) -> tuple[Care, Any]:
        runtime = Runtime(config=self.config, pool=self.pool, clock=FakeClock(T0))
        self._serving = serving(runtime, asterisk_config(self.peer.port), ManualTime())
        server = await self._serving.__aenter__()
        await up(server)
        care = start(self.config, self.pool, lambda rt: Originator(rt, {"pbx1": server}))
        return care, server

    async def __aexit__(self, *exc: object) -> None:
        await self._serving.__aexit__(None, None, None)


async def test_api_creates_lists_pauses_and_shows_every_try(service: Service) -> None:
    assert service.runtime is not None
    async with service.runtime.pool.acquire() as conn:
        user = await create_user(conn, "wangfang", Role.OPERATOR, display_name="王芳")
        token = await issue_token(conn, user.id)
    who = await resident(service.runtime.pool)
    base = f"/api/v1/residents/{who}/care-plans"
    async with aiohttp.ClientSession(
        base_url=service.url, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        async with http.post(base, json={"days": [1, 3, 5], "time_of_day": "09:30", "notes": "独居"}) as resp:
            assert resp.status == 201, await resp.text()
            plan = await resp.json()
        assert (plan["schedule"], plan["time_of_day"], plan["unanswered_threshold"]) == ("weekly", "09:30", 3)
        assert plan["next_due_at"] is not None
        assert plan["calls"] == []
        async with http.post(base, json={"days": [8], "time_of_day": "09:30"}) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["field"] == "days"
        far = {"schedule": "interval", "interval_seconds": 3600, "starts_at": "9999-12-31T23:00:00+00:00"}
        async with http.post(base, json=far) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["field"] == "starts_at"
        async with http.post(f"{base}/{plan['id']}/pause") as resp:
            assert resp.status == 200
            assert (await resp.json())["active"] is False
        async with http.patch(f"{base}/{plan['id']}", json={"active": True, "time_of_day": "10:00"}) as resp:
            changed = await resp.json()
            assert (changed["active"], changed["time_of_day"]) == (True, "10:00")
        async with http.get(base) as resp:
            assert [p["id"] for p in (await resp.json())["items"]] == [plan["id"]]
        async with http.get(f"/api/v1/residents/{who + 1}/care-plans/{plan['id']}") as resp:
            assert resp.status == 404
        async with http.get("/api/openapi.json") as resp:
            paths = (await resp.json())["paths"]
        assert "/api/v1/residents/{id}/care-plans/{plan_id}/pause" in paths
