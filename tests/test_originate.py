"""Calls Careline places: the Originate sent, Asterisk's answers as recorded, the result written.

Recordings 04, 05, 06 and 08 were made by a client whose ActionIDs were callback-0004,
carecall-0005, ...; the peer answers Careline's own Originate with the recording,
Careline's ActionID in place of the recorded one (in OriginateResponse, the channel
variables and the IVR's CallId alike).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from dispatch.alert_desk import Actor, AlertDesk
from dispatch.alerts import AlertKind, AlertSource
from dispatch.deadlines import DeadlineHandlers, fire_due_deadlines
from dispatch.runtime import Runtime
from telephony.originate import (
    Originator,
    Purpose,
    TelephonyUnavailable,
    get_attempt,
    place_callback,
    place_care_call,
    place_family_call,
    register_call_attempts,
)
from telephony.simulator import AmiPeer, replay, silent_originate
from tests import factories
from tests.ami_peer import SECRET, USERNAME, ManualTime, asterisk_config, drained, recording, serving, up


async def resident(runtime: Runtime, phone: str, contacts: list[tuple[str, str]] | None = None) -> int:
    async with runtime.pool.acquire() as conn:
        _, community = await factories.community(conn)
        return await factories.resident(conn, community_id=community, phone=phone, contacts=contacts)


async def attempt_row(runtime: Runtime, attempt_id: int) -> dict[str, Any]:
    async with runtime.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM call_attempts WHERE id = $1", attempt_id)
    assert row is not None
    return dict(row.items())


async def call_row(runtime: Runtime) -> dict[str, Any]:
    async with runtime.pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM calls")
    assert len(rows) == 1, rows
    return dict(rows[0].items())


async def test_callback_rings_the_operator_then_the_resident_and_is_answered(
    runtime: Runtime, peer: AmiPeer
) -> None:
    resident_id = await resident(runtime, "+8613800138000")
    peer.play(replay(recording("04-outbound-callback-answered"), stamped=True))
    async with serving(runtime, asterisk_config(peer.port), ManualTime()) as server:
        await up(server)
        originator = Originator(runtime, {"pbx1": server})
        attempt = await place_callback(
            originator, operator="8001", resident_id=resident_id, requested_by="user:wangfang"
        )
        assert attempt.action_id == f"callback-{attempt.id:04d}"
        await drained(peer, server)
    sent = next(a for a in peer.received if a["Action"] == "Originate")
    assert sent["ActionID"] == attempt.action_id
    assert sent["Channel"] == "Local/8001@operators"
    assert (sent["Context"], sent["Exten"], sent["Priority"]) == ("outbound", "13800138000", "1")
    assert sent["CallerID"] == '"12349" <12349>'
    assert sent["Async"] == "true"
    assert sent["Timeout"] == "30000"
    assert sent["Variable"] == f"CALLBACK_ID={attempt.action_id}"
    row = await attempt_row(runtime, attempt.id)
    call = await call_row(runtime)
    assert (row["state"], row["result"], row["reason_code"]) == ("finished", "answered", 4)
    assert row["call_id"] == call["id"]
    assert call["attempt_id"] == attempt.id
    assert call["direction"] == "outbound"
    assert call["called_number"] == "+8613800138000"
    assert call["caller_number"] == "12349"
    assert call["resident_id"] == resident_id
    assert call["disposition"] == "answered"
    assert call["operator"] == "8001"
    # 8001 picks up 3 s after the Originate; the call lasts 14 s from then
    assert (call["wait_seconds"], call["talk_seconds"]) == (3, 14)


@pytest.mark.parametrize(
    ("name", "phone", "result", "reason", "disposition", "cause"),
    [
        ("05-originate-failed-busy", "+8613700137000", "busy", 5, "busy", 17),
        ("06-originate-failed-no-answer", "+8613600136000", "no_answer", 3, "no_answer", 19),
    ],
)
async def test_care_call_that_fails(
    runtime: Runtime,
    peer: AmiPeer,
    name: str,
    phone: str,
    result: str,
    reason: int,
    disposition: str,
    cause: int,
) -> None:
    resident_id = await resident(runtime, phone)
    peer.play(replay(recording(name)))
    async with serving(runtime, asterisk_config(peer.port), ManualTime()) as server:
        await up(server)
        originator = Originator(runtime, {"pbx1": server})
        attempt = await place_care_call(
            originator,
            resident_id=resident_id,
            subject_type="care_plan",
            subject_id=7,
            requested_by="system:care",
        )
        await drained(peer, server)
    sent = next(a for a in peer.received if a["Action"] == "Originate")
    assert sent["Channel"] == f"Local/{phone[3:]}@outbound"
    assert (sent["Context"], sent["Exten"]) == ("care-ivr", "s")
    assert sent["Variable"] == f"CARE_CALL_ID={attempt.action_id}"
    row = await attempt_row(runtime, attempt.id)
    assert (row["state"], row["result"], row["reason_code"]) == ("finished", result, reason)
    assert (row["subject_type"], row["subject_id"]) == ("care_plan", 7)
    call = await call_row(runtime)
    assert (call["disposition"], call["hangup_cause"]) == (disposition, cause)
    assert call["attempt_id"] == attempt.id
    assert row["call_id"] == call["id"]


async def test_care_call_reports_the_digit_pressed(runtime: Runtime, peer: AmiPeer) -> None:
    resident_id = await resident(runtime, "+8613800138001")
    events: list[str] = []

    async def listen(event: Any) -> None:
        events.append(event.kind)

    subscription = runtime.bus.subscribe("test", listen, prefix="call_attempt.", lossless=True)
    peer.play(replay(recording("08-care-call-ivr-dtmf-userevent")))
    async with serving(runtime, asterisk_config(peer.port), ManualTime()) as server:
        await up(server)
        originator = Originator(runtime, {"pbx1": server})
        attempt = await place_care_call(originator, resident_id=resident_id, requested_by="system:care")
        await drained(peer, server)
    row = await attempt_row(runtime, attempt.id)
    assert (row["result"], row["reason_code"], row["digit"], row["read_status"]) == ("answered", 4, "1", "OK")
    assert (await call_row(runtime))["disposition"] == "answered"
    await subscription.close()
    assert events == ["call_attempt.placed", "call_attempt.finished", "call_attempt.digit"]


async def test_originate_nobody_answers_is_failed_by_its_deadline(runtime: Runtime) -> None:
    """Asterisk reads the Originate and never answers it: the deadline row fails the attempt."""
    peer = AmiPeer(username=USERNAME, secret=SECRET, originate=silent_originate)
    await peer.start()
    handlers = DeadlineHandlers()
    register_call_attempts(handlers)
    try:
        resident_id = await resident(runtime, "+8613800138002")
        async with serving(runtime, asterisk_config(peer.port), ManualTime()) as server:
            await up(server)
            originator = Originator(runtime, {"pbx1": server})
            attempt = await place_care_call(
                originator, resident_id=resident_id, purpose=Purpose.RATING, requested_by="system:rating"
            )
            await drained(peer, server)
            assert (await attempt_row(runtime, attempt.id))["state"] == "pending"
            early = await fire_due_deadlines(
                runtime.pool, handlers, attempt.timeout_at - dt.timedelta(seconds=1)
            )
            assert early.fired == 0
            late = await fire_due_deadlines(
                runtime.pool, handlers, attempt.timeout_at + dt.timedelta(seconds=1)
            )
            assert late.fired == 1
    finally:
        await peer.stop()
    sent = next(a for a in peer.received if a["Action"] == "Originate")
    assert sent["Context"] == "rating-ivr"
    row = await attempt_row(runtime, attempt.id)
    assert (row["state"], row["result"]) == ("finished", "failed")
    assert row["reason"] == "timeout: Asterisk never answered the Originate"


async def test_originate_refused_by_asterisk_fails_at_once(runtime: Runtime) -> None:
    def refuse(action: dict[str, str]) -> list[bytes]:
        return [f"Response: Error\r\nActionID: {action['ActionID']}\r\nMessage: Originate failed".encode()]

    peer = AmiPeer(username=USERNAME, secret=SECRET, originate=refuse)
    await peer.start()
    try:
        resident_id = await resident(runtime, "+8613800138003")
        async with serving(runtime, asterisk_config(peer.port), ManualTime()) as server:
            await up(server)
            originator = Originator(runtime, {"pbx1": server})
            attempt = await place_care_call(originator, resident_id=resident_id, requested_by="system:care")
            await drained(peer, server)
    finally:
        await peer.stop()
    row = await attempt_row(runtime, attempt.id)
    assert (row["state"], row["result"]) == ("finished", "failed")
    assert row["reason"] == "Asterisk refused the call: Originate failed"


async def test_family_call_goes_to_the_contact_at_that_position(runtime: Runtime, peer: AmiPeer) -> None:
    resident_id = await resident(
        runtime, "+8613800138004", contacts=[("王丽", "+8613900000001"), ("王强", "+8613900000002")]
    )
    async with runtime.pool.acquire() as conn:
        raised = await AlertDesk(runtime).raise_alert(
            conn,
            source=AlertSource.OPERATOR,
            kind=AlertKind.SOS,
            resident_id=resident_id,
            actor=Actor("user:t"),
        )
    async with serving(runtime, asterisk_config(peer.port), ManualTime()) as server:
        await up(server)
        originator = Originator(runtime, {"pbx1": server})
        plain = await place_family_call(
            originator, alert_id=raised.alert.id, position=2, requested_by="user:t"
        )
        through = await place_family_call(
            originator, alert_id=raised.alert.id, position=1, operator="8002", requested_by="user:t"
        )
        await drained(peer, server)
    sent = [a for a in peer.received if a["Action"] == "Originate"]
    assert (sent[0]["Channel"], sent[0]["Context"], sent[0]["Exten"]) == (
        "Local/13900000002@outbound",
        "family-call",
        "s",
    )
    assert (sent[1]["Channel"], sent[1]["Context"], sent[1]["Exten"]) == (
        "Local/8002@operators",
        "outbound",
        "13900000001",
    )
    for attempt in (plain, through):
        row = await attempt_row(runtime, attempt.id)
        assert row["state"] == "queued"
        assert row["alert_id"] == raised.alert.id
        assert row["context_id"] == raised.alert.context_id


async def test_no_link_up_writes_a_failed_attempt(runtime: Runtime) -> None:
    resident_id = await resident(runtime, "+8613800138005")
    originator = Originator(runtime, {})
    with pytest.raises(TelephonyUnavailable) as raised:
        await place_care_call(originator, resident_id=resident_id, requested_by="system:care")
    async with runtime.pool.acquire() as conn:
        attempt = await get_attempt(conn, raised.value.attempt.id)
    assert attempt is not None
    assert (attempt.state.value, attempt.result.value if attempt.result else None) == ("finished", "failed")
    assert attempt.reason == "no Asterisk link was up"


def test_reason_codes_map_to_results() -> None:
    from telephony.originate import REASONS, AttemptResult

    assert {code: result for code, (result, _) in REASONS.items()} == {
        0: AttemptResult.FAILED,
        1: AttemptResult.FAILED,
        3: AttemptResult.NO_ANSWER,
        4: AttemptResult.ANSWERED,
        5: AttemptResult.BUSY,
        8: AttemptResult.FAILED,
    }
    assert dataclasses.is_dataclass(AttemptResult) is False
