"""The emergency lane end to end, with time moved on purpose: the ladder, the teams, the family.

Real PostgreSQL, the real SMS outbox rows and the real inbound reply path
(`route_reply`, as the Twilio webhook and the console outbox use it); the
clock is injected so every step is checked at its due time without sleeping.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import asyncpg
import pytest

from dispatch.alert_desk import Actor, AlertDesk
from dispatch.alert_replies import register_alert_replies
from dispatch.alerts import AlertKind, AlertSource, AlertState, Outcome, ReasonRequired
from dispatch.config import Config
from dispatch.deadlines import DeadlineHandlers, FireReport, fire_due_deadlines, pending_deadlines
from dispatch.escalation import register_escalation
from dispatch.events import timeline
from dispatch.runtime import Runtime
from providers.inbound import route_reply
from tests import factories
from tests.helpers import FakeClock

T0 = dt.datetime(2026, 11, 23, 18, 0, tzinfo=dt.UTC)  # 02:00 in Hohhot
DAUGHTER = "+8613911110001"
SON = "+8613911110002"
NEAR_MEMBER = "+8613622220001"
FAR_MEMBER = "+8613622220002"


@dataclasses.dataclass
class Floor:
    runtime: Runtime
    clock: FakeClock
    desk: AlertDesk
    handlers: DeadlineHandlers
    resident: int
    device: int
    near: int
    far: int

    async def fire(self, **after: float) -> FireReport:
        self.clock.now = T0 + dt.timedelta(**after)
        report = await fire_due_deadlines(self.runtime.pool, self.handlers, self.clock.now)
        await self.runtime.bus.publish(*report.events)
        return report

    async def reply(self, phone: str, text: str) -> Any:
        return await route_reply(self.runtime, from_raw=phone, body=text, received_at=self.clock.now)

    async def sms_to(self, phone: str) -> list[asyncpg.Record]:
        return await self.runtime.pool.fetch(
            "SELECT body, purpose FROM sms_messages WHERE direction = 'out' AND to_e164 = $1 ORDER BY id",
            phone,
        )

    async def steps(self, alert_id: int) -> list[dict[str, Any]]:
        async with self.runtime.pool.acquire() as conn:
            return [e.data for e in await timeline(conn, "alert", alert_id) if e.kind == "alert.escalated"]


@pytest.fixture
async def floor(config: Config, pool: asyncpg.Pool) -> Floor:
    clock = FakeClock(T0)
    runtime = Runtime(config=config, pool=pool, clock=clock)
    desk = AlertDesk(runtime)
    handlers = DeadlineHandlers()
    register_escalation(handlers, desk)
    register_alert_replies(desk)
    async with pool.acquire() as conn:
        district, community = await factories.community(conn, lat=40.85, lon=111.70)
        resident = await factories.resident(
            conn, community_id=community, lat=40.85, lon=111.70, contacts=[("李娜", DAUGHTER), ("李强", SON)]
        )
        device = await factories.device(conn, resident_id=resident)
        near = await factories.team(
            conn, code="NEAR", district_ids=[district], lat=40.86, lon=111.71, members=[NEAR_MEMBER]
        )
        far = await factories.team(
            conn, code="FAR", district_ids=[district], lat=40.70, lon=111.60, members=[FAR_MEMBER]
        )
    return Floor(runtime, clock, desk, handlers, resident, device, near, far)


async def raise_sos(floor: Floor) -> int:
    raised = await floor.desk.raise_and_publish(
        source=AlertSource.ALARM, kind=AlertKind.SOS, device_id=floor.device, actor=Actor("dc09:test")
    )
    return raised.alert.id


async def job_code(floor: Floor, alert_id: int, team_id: int) -> str:
    code = await floor.runtime.pool.fetchval(
        "SELECT code FROM sms_jobs WHERE subject_id = $1 AND party_id = $2 AND open", alert_id, team_id
    )
    assert code is not None
    return str(code)


async def state_of(floor: Floor, alert_id: int) -> str:
    return str(await floor.runtime.pool.fetchval("SELECT state FROM alerts WHERE id = $1", alert_id))


async def test_unacknowledged_alert_climbs_the_ladder_on_time(floor: Floor) -> None:
    alert_id = await raise_sos(floor)
    assert (await floor.fire(seconds=29.9)).fired == 0
    first = await floor.fire(seconds=30)
    assert first.fired == 1
    second = await floor.fire(seconds=59)
    assert second.fired == 0
    await floor.fire(seconds=60.4)
    steps = await floor.steps(alert_id)
    assert [s["step"] for s in steps] == ["alert.ack_supervisor", "alert.ack_all_operators"]
    assert [s["audience"] for s in steps] == ["supervisor", "all"]
    assert steps[0]["due_at"] == (T0 + dt.timedelta(seconds=30)).isoformat()
    assert steps[0]["fired_at"] == (T0 + dt.timedelta(seconds=30)).isoformat()
    assert steps[1]["fired_at"] == (T0 + dt.timedelta(seconds=60.4)).isoformat()
    notices = await floor.runtime.pool.fetch(
        "SELECT kind, severity FROM notices WHERE subject_id = $1 ORDER BY id", alert_id
    )
    assert [(n["kind"], n["severity"]) for n in notices] == [
        ("alert.ack_supervisor", "critical"),
        ("alert.ack_all_operators", "critical"),
    ]
    assert await floor.runtime.pool.fetchval("SELECT escalations FROM alerts WHERE id = $1", alert_id) == 2


async def test_acknowledged_in_time_never_escalates(floor: Floor) -> None:
    alert_id = await raise_sos(floor)
    floor.clock.advance(seconds=12)
    await floor.desk.acknowledge(alert_id, Actor.user("wangfang"))
    report = await floor.fire(hours=2)
    assert report.fired == 0
    assert await floor.steps(alert_id) == []
    assert await floor.sms_to(DAUGHTER) == []  # not confirmed real yet: the family is not woken


async def test_full_night_team_silent_next_team_replies_by_sms(floor: Floor) -> None:
    alert_id = await raise_sos(floor)
    floor.clock.advance(seconds=10)
    await floor.desk.acknowledge(alert_id, Actor.user("wangfang"))
    floor.clock.advance(seconds=20)
    alert = await floor.desk.dispatch(alert_id, Actor.user("wangfang"))
    assert alert.team_id == floor.near
    near_code = await job_code(floor, alert_id, floor.near)
    dispatch_sms = await floor.sms_to(NEAR_MEMBER)
    assert dispatch_sms[0]["purpose"] == "dispatch"
    assert near_code in dispatch_sms[0]["body"]
    assert dispatch_sms[0]["body"].startswith("【12349】")
    family = await floor.sms_to(DAUGHTER)
    assert [m["purpose"] for m in family] == ["family"]

    # NEAR stays silent for 2 minutes: the ladder sends FAR and stands NEAR down.
    assert (await floor.fire(seconds=30 + 119)).fired == 0
    await floor.fire(seconds=30 + 120)
    assert await state_of(floor, alert_id) == AlertState.TEAM_DISPATCHED
    assert (
        await floor.runtime.pool.fetchval("SELECT team_id FROM alerts WHERE id = $1", alert_id) == floor.far
    )
    assert [m["purpose"] for m in await floor.sms_to(NEAR_MEMBER)] == ["dispatch", "cancellation"]
    steps = await floor.steps(alert_id)
    assert [s["step"] for s in steps] == ["alert.team_silent"]

    # NEAR's late reply no longer counts; FAR's does.
    late = await floor.reply(NEAR_MEMBER, f"1 {near_code}")
    assert late.outcome.value != "acted"
    far_code = await job_code(floor, alert_id, floor.far)
    floor.clock.advance(seconds=15)
    answer = await floor.reply(FAR_MEMBER, f"接 {far_code}")
    assert answer.outcome.value == "acted"
    assert await state_of(floor, alert_id) == AlertState.TEAM_ACKNOWLEDGED
    assert any("team" in m["body"] or "应急服务队" in m["body"] for m in await floor.sms_to(DAUGHTER))

    floor.clock.advance(minutes=9)
    await floor.reply(FAR_MEMBER, f"３　{far_code}")  # full-width digit and space, as a phone may send
    assert await state_of(floor, alert_id) == AlertState.ON_SCENE
    floor.clock.advance(minutes=20)
    await floor.reply(FAR_MEMBER, "完")  # the only open job of that team: the code may be left out
    assert await state_of(floor, alert_id) == AlertState.RESOLVED
    assert await floor.runtime.pool.fetchval("SELECT outcome FROM alerts WHERE id = $1", alert_id) == (
        Outcome.HANDLED_AT_HOME
    )
    async with floor.runtime.pool.acquire() as conn:
        assert await pending_deadlines(conn, "alert", alert_id) == []
    assert [m["purpose"] for m in await floor.sms_to(DAUGHTER)] == ["family", "family", "family"]
    assert "已在家中妥善处理" in (await floor.sms_to(DAUGHTER))[-1]["body"]
    assert (await floor.fire(hours=5)).fired == 0


async def test_on_scene_overdue_tells_the_supervisor(floor: Floor) -> None:
    alert_id = await raise_sos(floor)
    await floor.desk.acknowledge(alert_id, Actor.user("op"))
    await floor.desk.dispatch(alert_id, Actor.user("op"))
    await floor.desk.team_acknowledge(alert_id, Actor.team("NEAR"))
    await floor.fire(minutes=19, seconds=59)
    assert await floor.steps(alert_id) == []
    await floor.fire(minutes=20)
    assert [s["step"] for s in await floor.steps(alert_id)] == ["alert.on_scene_overdue"]


async def test_family_next_contact_when_the_first_is_not_reached(floor: Floor) -> None:
    alert_id = await raise_sos(floor)
    await floor.desk.acknowledge(alert_id, Actor.user("op"), real=True)
    assert len(await floor.sms_to(DAUGHTER)) == 1
    assert await floor.sms_to(SON) == []
    await floor.runtime.pool.execute(
        "UPDATE sms_messages SET status = 'failed', last_error = 'unreachable' WHERE to_e164 = $1", DAUGHTER
    )
    await floor.fire(seconds=180)
    assert [m["purpose"] for m in await floor.sms_to(SON)] == ["family"]
    # The son's message was sent (outbox): nobody further to try, and no more checks fire.
    await floor.runtime.pool.execute("UPDATE sms_messages SET status = 'sent' WHERE to_e164 = $1", SON)
    assert (await floor.fire(seconds=400)).fired == 1
    assert len(await floor.sms_to(SON)) == 1


async def test_declining_team_sends_the_next_one_at_once(floor: Floor) -> None:
    alert_id = await raise_sos(floor)
    await floor.desk.acknowledge(alert_id, Actor.user("op"))
    await floor.desk.dispatch(alert_id, Actor.user("op"))
    code = await job_code(floor, alert_id, floor.near)
    result = await floor.reply(NEAR_MEMBER, f"2 {code}")
    assert result.outcome.value == "acted"
    assert (
        await floor.runtime.pool.fetchval("SELECT team_id FROM alerts WHERE id = $1", alert_id) == floor.far
    )


async def test_operator_may_choose_another_team(floor: Floor) -> None:
    alert_id = await raise_sos(floor)
    await floor.desk.acknowledge(alert_id, Actor.user("op"))
    alert = await floor.desk.dispatch(
        alert_id, Actor.user("op"), team_id=floor.far, reason="NEAR's road is closed"
    )
    assert alert.team_id == floor.far
    async with floor.runtime.pool.acquire() as conn:
        dispatched = [e for e in await timeline(conn, "alert", alert_id) if e.kind == "alert.team_dispatched"]
    assert dispatched[0].data == {"team_id": floor.far, "chosen": "operator's choice"}
    assert dispatched[0].reason == "NEAR's road is closed"


async def test_escalated_alert_needs_a_reason_to_close(floor: Floor) -> None:
    alert_id = await raise_sos(floor)
    await floor.fire(seconds=31)
    await floor.desk.acknowledge(alert_id, Actor.user("op"))
    with pytest.raises(ReasonRequired):
        await floor.desk.resolve(alert_id, Actor.user("op"), outcome=Outcome.FALSE_ALARM)
    assert await state_of(floor, alert_id) == AlertState.ACKNOWLEDGED
    await floor.desk.resolve(
        alert_id, Actor.user("op"), outcome=Outcome.FALSE_ALARM, reason="operator was on 120"
    )
    assert (
        await floor.runtime.pool.fetchval("SELECT false_alarms FROM devices WHERE id = $1", floor.device) == 1
    )


async def test_no_access_raises_a_critical_notice(floor: Floor) -> None:
    alert_id = await raise_sos(floor)
    await floor.desk.acknowledge(alert_id, Actor.user("op"), real=True)
    await floor.desk.resolve(alert_id, Actor.user("op"), outcome=Outcome.NO_ACCESS)
    kinds = await floor.runtime.pool.fetch(
        "SELECT kind, severity FROM notices WHERE subject_id = $1", alert_id
    )
    assert ("alert.no_access", "critical") in [(k["kind"], k["severity"]) for k in kinds]
    assert "未能入户" in (await floor.sms_to(DAUGHTER))[-1]["body"]


async def test_handoff_120_is_recorded_and_done_means_hospital(floor: Floor) -> None:
    alert_id = await raise_sos(floor)
    await floor.desk.acknowledge(alert_id, Actor.user("op"))
    await floor.desk.dispatch(alert_id, Actor.user("op"))
    floor.clock.advance(minutes=3)
    alert = await floor.desk.handoff_120(alert_id, Actor.user("op"), reason="chest pain")
    assert alert.handoff_120_at == floor.clock.now
    code = await job_code(floor, alert_id, floor.near)
    await floor.reply(NEAR_MEMBER, f"9 {code}")
    assert (
        await floor.runtime.pool.fetchval("SELECT outcome FROM alerts WHERE id = $1", alert_id) == "hospital"
    )


async def test_cancel_stands_the_team_down(floor: Floor) -> None:
    alert_id = await raise_sos(floor)
    await floor.desk.acknowledge(alert_id, Actor.user("op"))
    await floor.desk.dispatch(alert_id, Actor.user("op"))
    await floor.desk.cancel(
        alert_id, Actor.user("op"), reason="resident called back: pressed by mistake", false_alarm=True
    )
    assert [m["purpose"] for m in await floor.sms_to(NEAR_MEMBER)] == ["dispatch", "cancellation"]
    assert await floor.runtime.pool.fetchval("SELECT count(*) FROM sms_jobs WHERE open") == 0
    assert (
        await floor.runtime.pool.fetchval("SELECT false_alarms FROM devices WHERE id = $1", floor.device) == 1
    )


async def test_team_without_a_mobile_is_flagged_for_a_phone_call(floor: Floor) -> None:
    await floor.runtime.pool.execute("DELETE FROM team_members WHERE team_id = $1", floor.near)
    await floor.runtime.pool.execute(
        "UPDATE emergency_teams SET phone_e164 = '+864716912345' WHERE id = $1", floor.near
    )
    alert_id = await raise_sos(floor)
    await floor.desk.acknowledge(alert_id, Actor.user("op"))
    await floor.desk.dispatch(alert_id, Actor.user("op"))
    notices = await floor.runtime.pool.fetch(
        "SELECT kind, severity FROM notices WHERE subject_id = $1", alert_id
    )
    assert ("alert.team_unreachable_by_sms", "critical") in [(n["kind"], n["severity"]) for n in notices]
    landline_sms = await floor.runtime.pool.fetchval(
        "SELECT count(*) FROM sms_messages WHERE to_e164 = '+864716912345'"
    )
    assert landline_sms == 0
