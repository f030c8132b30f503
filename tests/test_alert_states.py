"""The alert state machine: every legal step, every illegal one refused, races with one winner."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools

import asyncpg
import pytest

from dispatch.alerts import (
    TRANSITIONS,
    AlertKind,
    AlertSource,
    AlertState,
    IllegalTransition,
    Outcome,
    insert_or_join_alert,
    list_alerts,
    transition,
)
from dispatch.events import timeline
from tests import factories

T0 = dt.datetime(2026, 11, 23, 18, 0, tzinfo=dt.UTC)  # 02:00 in Shanghai


async def new_alert(pool: asyncpg.Pool, kind: AlertKind = AlertKind.SOS) -> tuple[int, int]:
    async with pool.acquire() as conn, conn.transaction():
        district_id, community_id = await factories.community(conn)
        resident_id = await factories.resident(conn, community_id=community_id)
        raised = await insert_or_join_alert(
            conn,
            source=AlertSource.ALARM,
            kind=kind,
            resident_id=resident_id,
            device_id=None,
            context={"via": "test"},
            actor="test",
            at=T0,
        )
        team_id = await factories.team(conn, code="T1", district_ids=[district_id], lat=40.8, lon=111.7)
    return raised.alert.id, team_id


# The path to each state from raised, as actions.
PATHS: dict[AlertState, list[str]] = {
    AlertState.RAISED: [],
    AlertState.ACKNOWLEDGED: ["acknowledge"],
    AlertState.TEAM_DISPATCHED: ["acknowledge", "dispatch"],
    AlertState.TEAM_ACKNOWLEDGED: ["acknowledge", "dispatch", "team_acknowledge"],
    AlertState.ON_SCENE: ["acknowledge", "dispatch", "team_acknowledge", "on_scene"],
    AlertState.RESOLVED: ["acknowledge", "resolve"],
    AlertState.CANCELLED: ["cancel"],
}


def value_for(action: str, team_id: int) -> object:
    return {"dispatch": team_id, "resolve": Outcome.HANDLED_AT_HOME.value}.get(action)


@pytest.mark.parametrize(("start", "action"), list(itertools.product(PATHS, TRANSITIONS)))
async def test_every_action_from_every_state(pool: asyncpg.Pool, start: AlertState, action: str) -> None:
    alert_id, team_id = await new_alert(pool)
    async with pool.acquire() as conn:
        for step in PATHS[start]:
            await transition(conn, alert_id, step, actor="op", at=T0, value=value_for(step, team_id))
        before_events = len(await timeline(conn, "alert", alert_id))
        allowed, target = TRANSITIONS[action]
        if start in allowed:
            moved = await transition(
                conn, alert_id, action, actor="op", at=T0, value=value_for(action, team_id)
            )
            assert moved.alert.state == target
            assert moved.before == start
            entries = await timeline(conn, "alert", alert_id)
            assert len(entries) == before_events + 1
            assert (entries[-1].from_state, entries[-1].to_state, entries[-1].actor) == (start, target, "op")
        else:
            with pytest.raises(IllegalTransition) as err:
                await transition(conn, alert_id, action, actor="op", at=T0, value=value_for(action, team_id))
            assert err.value.current == start
            assert start.value in str(err.value)
            state = await conn.fetchval("SELECT state FROM alerts WHERE id = $1", alert_id)
            assert state == start.value
            assert len(await timeline(conn, "alert", alert_id)) == before_events


async def test_racing_acknowledgements_have_one_winner(pool: asyncpg.Pool) -> None:
    alert_id, _ = await new_alert(pool)

    async def acknowledge(operator: str) -> str:
        async with pool.acquire() as conn, conn.transaction():
            try:
                await transition(conn, alert_id, "acknowledge", actor=operator, at=T0)
            except IllegalTransition:
                return "lost"
            await asyncio.sleep(0.01)  # hold the row lock so the others really wait on it
            return "won"

    results = await asyncio.gather(*(acknowledge(f"op{i}") for i in range(5)))
    assert sorted(results) == ["lost"] * 4 + ["won"]
    winner = await pool.fetchval("SELECT acknowledged_by FROM alerts WHERE id = $1", alert_id)
    assert winner == f"op{results.index('won')}"
    acks = await pool.fetchval("SELECT count(*) FROM events WHERE kind = 'alert.acknowledged'")
    assert acks == 1


async def test_second_press_joins_the_open_alert(pool: asyncpg.Pool) -> None:
    alert_id, _ = await new_alert(pool)
    async with pool.acquire() as conn:
        resident_id = await conn.fetchval("SELECT resident_id FROM alerts WHERE id = $1", alert_id)
        for _ in range(4):
            again = await insert_or_join_alert(
                conn,
                source=AlertSource.ALARM,
                kind=AlertKind.SOS,
                resident_id=resident_id,
                device_id=None,
                context={},
                actor="test",
                at=T0,
            )
            assert not again.created
            assert again.alert.id == alert_id
        assert again.alert.triggers == 5
        other_kind = await insert_or_join_alert(
            conn,
            source=AlertSource.ALARM,
            kind=AlertKind.FIRE,
            resident_id=resident_id,
            device_id=None,
            context={},
            actor="test",
            at=T0,
        )
        assert other_kind.created
        await transition(conn, alert_id, "cancel", actor="op", at=T0, reason="pressed by mistake")
        after_close = await insert_or_join_alert(
            conn,
            source=AlertSource.ALARM,
            kind=AlertKind.SOS,
            resident_id=resident_id,
            device_id=None,
            context={},
            actor="test",
            at=T0,
        )
        assert after_close.created
        assert after_close.alert.id != alert_id


async def test_device_alert_finds_its_resident(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        _, community_id = await factories.community(conn)
        resident_id = await factories.resident(conn, community_id=community_id)
        device_id = await factories.device(conn, resident_id=resident_id)
        unknown_device = await factories.device(conn, resident_id=None)
        raised = await insert_or_join_alert(
            conn,
            source=AlertSource.ALARM,
            kind=AlertKind.SOS,
            resident_id=None,
            device_id=device_id,
            context={},
            actor="dc09",
            at=T0,
        )
        assert raised.alert.resident_id == resident_id
        orphan = await insert_or_join_alert(
            conn,
            source=AlertSource.ALARM,
            kind=AlertKind.SOS,
            resident_id=None,
            device_id=unknown_device,
            context={},
            actor="dc09",
            at=T0,
        )
        again = await insert_or_join_alert(
            conn,
            source=AlertSource.ALARM,
            kind=AlertKind.SOS,
            resident_id=None,
            device_id=unknown_device,
            context={},
            actor="dc09",
            at=T0,
        )
        assert again.alert.id == orphan.alert.id
        assert orphan.alert.resident_id is None


async def test_open_alerts_are_listed_first_oldest_first(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        _, community_id = await factories.community(conn)
        ids = []
        for minutes in (0, 5, 10):
            rid = await factories.resident(conn, community_id=community_id)
            raised = await insert_or_join_alert(
                conn,
                source=AlertSource.API,
                kind=AlertKind.SOS,
                resident_id=rid,
                device_id=None,
                context={},
                actor="t",
                at=T0 + dt.timedelta(minutes=minutes),
            )
            ids.append(raised.alert.id)
        await transition(conn, ids[0], "cancel", actor="op", at=T0)
        alerts, total = await list_alerts(conn)
        assert total == 3
        assert [a.id for a in alerts] == [ids[1], ids[2], ids[0]]
        only_cancelled, _ = await list_alerts(conn, state=AlertState.CANCELLED)
        assert [a.id for a in only_cancelled] == [ids[0]]


@pytest.mark.parametrize("owner", ["resident", "device", "nobody"])
async def test_a_raise_and_a_join_write_the_event_rows_their_domain_events_describe(
    pool: asyncpg.Pool, owner: str
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        _, community_id = await factories.community(conn)
        resident_id = await factories.resident(conn, community_id=community_id)
        device_id = await conn.fetchval(
            "INSERT INTO devices (serial, kind, resident_id) VALUES ('GW-EV', 'home_unit', $1) RETURNING id",
            resident_id if owner == "resident" else None,
        )
        raises = [
            await insert_or_join_alert(
                conn,
                source=AlertSource.ALARM,
                kind=AlertKind.FALL,
                resident_id=resident_id if owner == "resident" else None,
                device_id=device_id if owner != "nobody" else None,
                context={"via": "test", "zone": "卫生间"},
                actor=f"dc09:{n}",
                at=T0 + dt.timedelta(seconds=n),
            )
            for n in range(2)
        ]
    first, second = raises
    assert first.created
    assert second.created is (owner == "nobody")  # an unknown sender cannot be joined by this rule
    for raised in raises:
        [event] = raised.events
        async with pool.acquire() as conn:
            entries = await timeline(conn, "alert", raised.alert.id)
        [row] = [e for e in entries if e.id == event.event_id]
        stored = dict(row.data)
        if row.to_state:
            stored.setdefault("to", row.to_state)
        assert (row.kind, row.actor, row.occurred_at, stored) == (
            event.kind,
            event.actor,
            event.occurred_at,
            event.data,
        )
        assert event.data["triggers"] == raised.alert.triggers
    assert [e.kind for e in first.events + second.events] == [
        "alert.raised",
        "alert.raised" if owner == "nobody" else "alert.triggered_again",
    ]
