"""Call tracking as a pure function: recorded frames through the codec and the tracker, no sockets.

Besides the recordings as they are, each recording is also read with its channels renamed to
other technologies (a PJSIP trunk and PJSIP phones; a DAHDI line and SIP phones): the tracker
must not depend on Local channels.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telephony import ami_codec
from telephony.ami_codec import FrameReader, encode_action
from telephony.ami_events import AmiMessage, CallEvent, ChannelHungUp, ChannelSnapshot, OriginateResult
from telephony.calls import (
    Call,
    CallRules,
    CallTracker,
    Direction,
    Disposition,
    operator_extension,
    resource_of,
)
from telephony.sim_calls import CallFactory, interleave
from telephony.simulator import frame_headers, stamp
from tests.ami_frames import (
    CALLER_02,
    CONSULTATION,
    NAME_01,
    NAME_02,
    PJSIP,
    TECHNOLOGIES,
    TWIN_02,
    Channel,
    Script,
    Technology,
    attended_transfer,
    bridge_fields,
    core_show_channels,
    first,
    last_seen,
    on_technology,
    queue_times_out,
    stamped_at,
    talking_on_pjsip,
    timeline,
)
from tests.ami_peer import recording

RULES = CallRules(frozenset({"12349"}), frozenset({"123491"}), frozenset({"from-resident"}))


def track(
    data: bytes, *, chunk: int = 4096, received: float = 1000.0
) -> tuple[list[Call], CallTracker, FrameReader]:
    reader = FrameReader()
    tracker = CallTracker(RULES)
    ended: dict[str, Call] = {}
    for start in range(0, len(data), chunk):
        for message in reader.feed(data[start : start + chunk], received):
            if isinstance(message, OriginateResult):
                tracker.link_attempt(
                    message.action_id,
                    uniqueid=message.uniqueid,
                    channel=message.channel,
                    success=message.success,
                )
            elif isinstance(message, CallEvent):
                tracker.apply(message)
        for call in tracker.take_changed():
            if call.ended_at is not None:
                ended[call.linkedid] = call
    return list(ended.values()), tracker, reader


def stream(frames: Sequence[bytes]) -> bytes:
    return b"Asterisk Call Manager/9.0.0\r\n" + b"".join(f + b"\r\n\r\n" for f in frames)


def stamped(name: str) -> list[bytes]:
    rec = recording(name)
    return [stamp(f, rec.connected_epoch + t) for f, t in zip(rec.frames, rec.times, strict=True)]


def pjsip(frame: bytes) -> bytes:
    """Local channels as a PJSIP trunk and PJSIP phones would name them."""
    frame = re.sub(
        rb"Local/\d+@(?:from-resident|outbound|pstn)-([0-9a-f]{8});([12])", rb"PJSIP/trunk-\1\2", frame
    )
    frame = re.sub(rb"Local/(\d+)@operators-([0-9a-f]{8});[12]", rb"PJSIP/\1-\2", frame)
    return re.sub(rb"Local/(\d+)@operators", rb"PJSIP/\1", frame)


def dahdi_sip(frame: bytes) -> bytes:
    """The caller on a DAHDI line, the operators on chan_sip phones."""
    frame = re.sub(rb"Local/\d+@from-resident-([0-9a-f]{8});([12])", rb"DAHDI/i1/line\2-\1", frame)
    frame = re.sub(rb"Local/(\d+)@operators-([0-9a-f]{8});[12]", rb"SIP/\1-\2", frame)
    return re.sub(rb"Local/(\d+)@operators", rb"SIP/\1", frame)


# name: direction, disposition, operator, wait, talk, cause, far number
OUTCOMES = {
    "01-inbound-queue-answered": ("inbound", "answered", "8001", 3, 16, 16, "13800138000"),
    "02-abandoned-in-queue": ("inbound", "abandoned", None, 14, None, 16, "04716912345"),
    "03-emergency-button-userevent": ("inbound", "answered", "8001", 2, 9, 16, "13900139000"),
    "04-outbound-callback-answered": ("outbound", "answered", "8001", 3, 14, 16, "13800138000"),
    "05-originate-failed-busy": ("outbound", "busy", None, 0, None, 17, "13700137000"),
    "06-originate-failed-no-answer": ("outbound", "no_answer", None, 15, None, 19, "13600136000"),
    "08-care-call-ivr-dtmf-userevent": ("outbound", "answered", None, 3, 4, 16, "13800138001"),
}


@pytest.mark.parametrize("rename", [None, pjsip, dahdi_sip], ids=["local", "pjsip", "dahdi-sip"])
@pytest.mark.parametrize("name", sorted(OUTCOMES))
def test_each_recording_ends_as_one_call(name: str, rename: Callable[[bytes], bytes] | None) -> None:
    frames = stamped(name)
    if rename is not None:
        frames = [rename(f) for f in frames]
    for chunk in (1, 97, 65536):
        ended, tracker, reader = track(stream(frames), chunk=chunk)
        assert reader.skipped == 0
        assert tracker.calls == {}
        assert len(ended) == 1
        assert outcome(ended[0]) == OUTCOMES[name]


def outcome(call: Call) -> tuple[object, ...]:
    """What OUTCOMES says of a call."""
    return (
        call.direction.value,
        call.disposition.value if call.disposition else None,
        call.operator,
        call.wait_seconds,
        call.talk_seconds,
        call.hangup_cause,
        call.far_number,
    )


DIDS = {"01-inbound-queue-answered": "12349", "02-abandoned-in-queue": "12349"}
DIDS["03-emergency-button-userevent"] = "123491"


@pytest.mark.parametrize("technology", TECHNOLOGIES, ids=[t.name for t in TECHNOLOGIES])
@pytest.mark.parametrize("name", sorted(OUTCOMES))
def test_each_recording_with_trunks_and_phones_of_other_technologies(
    name: str, technology: Technology
) -> None:
    """Each recording as it reads when the resident's line (or the number dialled out) is a trunk's
    channel and the operators' phones are real phones, of `technology`: one channel each instead of a
    Local pair (`on_technology`). A trunk may be named with dashes and digits (`trunk-cmcc`), IAX2
    numbers its channels in decimal, DAHDI names a span or a port, never an extension."""
    ended, tracker, reader = track(stream(on_technology(name, stamped(name), technology)))
    assert reader.skipped == 0
    assert tracker.calls == {}
    (call,) = ended
    assert outcome(call) == OUTCOMES[name]
    assert call.did == DIDS.get(name)


QUEUE_EVENTS = (b"Event: QueueCaller", b"Event: Agent")


@pytest.mark.parametrize("technology", TECHNOLOGIES, ids=[t.name for t in TECHNOLOGIES])
def test_a_phone_answering_without_a_queue_is_the_operator_on_any_technology(technology: Technology) -> None:
    """Variation of 01 on `technology`, without a queue (the dialplan Dials the operator's phone):
    only the answering phone's channel name (`IAX2/8001-4097`, `SIP/8001-0000001b`) says who it is."""
    frames = [
        f for f in on_technology(NAME_01, stamped(NAME_01), technology) if not f.startswith(QUEUE_EVENTS)
    ]
    (call,), tracker, _ = track(stream(frames))
    assert tracker.calls == {}
    assert (call.disposition, call.queue, call.operator) == (Disposition.ANSWERED, None, "8001")
    assert (call.caller, call.did, call.wait_seconds, call.talk_seconds) == ("13800138000", "12349", 3, 16)


def test_callbacks_and_care_calls_are_tied_to_their_originate() -> None:
    for name, action_id in [
        ("04-outbound-callback-answered", "callback-0004"),
        ("05-originate-failed-busy", "carecall-0005"),
        ("08-care-call-ivr-dtmf-userevent", "carecall-0008"),
    ]:
        (call,), _, _ = track(stream(recording(name).frames))
        assert call.attempt == action_id


def test_emergency_call_carries_the_button_press() -> None:
    (call,), _, _ = track(stream(recording("03-emergency-button-userevent").frames))
    assert call.emergency
    assert call.did == "123491"
    assert [(p.device, p.button, p.phone) for p in call.presses] == [("GW-0001", "SOS", "13900139000")]


def test_direct_dial_without_a_queue_is_answered_by_the_phone_that_answered() -> None:
    """Variation of 01: no queue events at all (a dialplan that Dials the operator's phone)."""
    frames = [f for f in stamped("01-inbound-queue-answered") if not f.startswith(QUEUE_EVENTS)]
    (call,), _, _ = track(stream(frames))
    assert call.disposition is Disposition.ANSWERED
    assert call.queue is None
    assert call.operator == "8001"
    assert (call.wait_seconds, call.talk_seconds) == (3, 16)  # from the recorded times


def test_congested_trunk_is_a_failed_call() -> None:
    """Variation of 05: the trunk reports congestion (DialStatus CONGESTION, cause 34)."""
    frames = [
        f.replace(b"DialStatus: BUSY", b"DialStatus: CONGESTION").replace(b"Cause: 17", b"Cause: 34")
        for f in recording("05-originate-failed-busy").frames
    ]
    (call,), _, _ = track(stream(frames))
    assert call.disposition is Disposition.FAILED
    assert call.hangup_cause == 34


def test_withheld_number_is_an_unknown_caller_that_still_rings() -> None:
    """Variation of 02: the caller's number is withheld (CallerIDNum <unknown> throughout)."""
    frames = [f.replace(b"04716912345", b"<unknown>") for f in recording("02-abandoned-in-queue").frames]
    (call,), _, _ = track(stream(frames))
    assert call.caller is None
    assert call.ready
    assert call.disposition is Disposition.ABANDONED


def test_resync_opens_what_is_live_and_closes_what_is_gone() -> None:
    tracker = CallTracker(RULES)
    frames = recording("01-inbound-queue-answered").frames
    reader = FrameReader()
    for message in reader.feed(stream(frames[:12]), 100.0):
        if isinstance(message, CallEvent):
            tracker.apply(message)
    tracker.take_changed()
    assert set(tracker.calls) == {"1795393745.0"}
    snapshot = ChannelSnapshot(
        "r1",
        "77.1",
        "77.1",
        "PJSIP/trunk-00000009",
        "13800138000",
        "12349",
        "from-trunk",
        6,
        "b1",
        "Queue",
        "hotline,r,,,180",
        65,
    )
    operator = ChannelSnapshot(
        "r1", "77.1", "77.2", "PJSIP/8002-0000000a", "13800138000", "8002", "operators", 6, "b1", "", "", 40
    )
    tracker.begin_resync()
    tracker.finish_resync([snapshot, operator], 200.0)
    changed = {c.linkedid: c for c in tracker.take_changed()}
    gone, live = changed["1795393745.0"], changed["77.1"]
    assert gone.ended_at == 200.0
    assert gone.hangup_cause is None
    assert live.direction is Direction.INBOUND
    assert live.arrived_at == 135.0
    assert (live.queue, live.operator, live.answered_at, live.resynced) == ("hotline", "8002", 200.0, True)


def test_synthetic_calls_are_tracked_like_recorded_ones() -> None:
    factory = CallFactory(epoch=1_795_400_000)
    calls = [
        factory.inbound("13800138000", answered_by="8002", ring_seconds=5, talk_seconds=30),
        factory.inbound("04716912345", answered_by=None, ring_seconds=12),
        factory.inbound("13900139000", did="123491", button="GW-0001"),
    ]
    merged = interleave(calls, [0.0, 1.0, 2.0])
    ended, _tracker, reader = track(stream([f for _, f in merged]))
    assert reader.skipped == 0
    outcomes = sorted((c.caller, c.disposition, c.operator, c.wait_seconds, c.talk_seconds) for c in ended)
    assert outcomes == [
        ("04716912345", Disposition.ABANDONED, None, 12, None),
        ("13800138000", Disposition.ANSWERED, "8002", 5, 30),
        ("13900139000", Disposition.ANSWERED, "8001", 3, 16),
    ]
    assert next(c for c in ended if c.caller == "13900139000").emergency


def _decoded(data: bytes) -> list[object]:
    reader = FrameReader()
    return [
        message
        for start in range(0, len(data), 4096)
        for message in reader.feed(data[start : start + 4096], 1.0)
    ]


@pytest.mark.parametrize("rename", [None, pjsip, dahdi_sip], ids=["local", "pjsip", "dahdi-sip"])
def test_reading_asterisks_own_layout_gives_what_the_general_decoder_gives(
    rename: Callable[[bytes], bytes] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path (one match per frame in Asterisk's header order) is only a shortcut."""
    factory = CallFactory(epoch=1_795_400_000)
    synthetic = interleave(
        [
            factory.inbound("13800138000", answered_by="8002", ring_seconds=5, talk_seconds=30),
            factory.inbound("04716912345", answered_by=None, ring_seconds=12),
        ],
        [0.0, 1.0],
    )
    frames = [f for name in sorted(OUTCOMES) for f in [*recording(name).frames, *stamped(name)]]
    frames += [f for _, f in synthetic]
    if rename is not None:
        frames = [rename(f) for f in frames]
    data = stream(frames)
    fast = _decoded(data)
    monkeypatch.setattr(ami_codec, "FAST", {})
    general = _decoded(data)
    assert fast == general
    assert sum(isinstance(m, ChannelHungUp) for m in fast) > 50


@pytest.mark.parametrize(
    ("channel", "resource", "extension"),
    [
        ("PJSIP/8001-0000001a", "8001", "8001"),
        ("Local/8001@operators-00000001;1", "8001", "8001"),
        ("PJSIP/8001", "8001", "8001"),
        ("SIP/wang-fang-0000000b", "wang-fang", None),
        ("PJSIP/trunk-00000003", "trunk", None),
        ("Local/13700137000@outbound-00000009;1", "13700137000", None),
        ("DAHDI/i1/13800138000-1", "i1/13800138000-1", None),
    ],
)
def test_operator_extension_of_a_channel(channel: str, resource: str, extension: str | None) -> None:
    assert resource_of(channel) == resource
    assert operator_extension(channel) == extension


def test_an_action_value_cannot_forge_headers() -> None:
    assert encode_action({"Action": "Ping", "ActionID": "a-1"}) == b"Action: Ping\r\nActionID: a-1\r\n\r\n"
    with pytest.raises(ValueError, match="line break"):
        encode_action({"Action": "Originate", "Exten": "123\r\nAction: Logoff"})


_VOCABULARY = [
    b"Event: Newchannel",
    b"Event: Hangup",
    b"Event: DialEnd",
    b"Event: BridgeEnter",
    b"Event: AgentConnect",
    b"Event: UserEvent",
    b"Event: CoreShowChannel",
    b"Event: OriginateResponse",
    b"Response: Success",
    b"Linkedid: 1.1",
    b"Uniqueid: 1.1",
    b"Uniqueid: 1.2",
    b"DestUniqueid: 1.2",
    b"ChannelState: 6",
    b"ChannelState: x",
    b"BridgeNumChannels: 2",
    b"BridgeUniqueid: b",
    b"Cause: 17",
    b"HoldTime: -5",
    b"Timestamp: nan",
    b"Timestamp: 1e400",
    b"Duration: 1:2",
    b"ActionID: careline-pbx1-2",
    b"UserEvent: EmergencyButton",
    "Channel: PJSIP/王".encode(),
    b"\xff\xfe",
    b"Key:",
    b"",
]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    lines=st.lists(st.lists(st.sampled_from(_VOCABULARY), max_size=8), max_size=30),
    noise=st.binary(max_size=200),
    recorded=st.integers(min_value=0, max_value=200),
    chunk=st.integers(min_value=1, max_value=300),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_nothing_from_the_wire_raises(
    lines: list[list[bytes]], noise: bytes, recorded: int, chunk: int, seed: int
) -> None:
    """Made-up frames, random bytes and a shuffled piece of a recording, cut anywhere."""
    frames = [b"\r\n".join(frame) for frame in lines]
    piece = list(recording("01-inbound-queue-answered").frames[:recorded])
    random.Random(seed).shuffle(piece)
    data = stream([*frames, noise, *piece, *frames])
    ended, tracker, _ = track(data, chunk=chunk)
    tracker.begin_resync()
    tracker.finish_resync([], 2000.0)
    for call in [*ended, *tracker.take_changed()]:
        if call.ended_at is not None:
            assert call.disposition is not None
            assert call.wait_seconds is not None
            assert call.wait_seconds >= 0


def test_analog_line_without_a_did_leaves_the_did_unknown() -> None:
    """Variation of 01 on an analog line (DAHDI/1-1): an FXO port has no DID, so its channel starts
    at `s` in the port's context (from-resident, an inbound context); the caller's number comes after
    the first ring (NewCallerid)."""
    frames = on_technology(NAME_01, stamped(NAME_01), TECHNOLOGIES[-1])
    created = first(frames, "Newchannel", b"Channel: DAHDI/1-1\r\n")
    frames[created] = frames[created].replace(b"Exten: 12349\r\n", b"Exten: s\r\n")
    (call,), _, _ = track(stream(frames))
    assert (call.direction, call.did, call.called, call.caller) == (
        Direction.INBOUND,
        None,
        None,
        "13800138000",
    )
    assert (call.disposition, call.operator) == (Disposition.ANSWERED, "8001")


# -- outcomes no recording holds ------------------------------------------------------------------------


ON_TRUNKS = [None, PJSIP]


ON_TRUNKS_IDS = ["local", "pjsip"]


def on(technology: Technology | None, name: str, frames: list[bytes]) -> list[bytes]:
    return frames if technology is None else on_technology(name, frames, technology)


OUT_05, FAR_05 = "Local/13700137000@outbound-00000009", "Local/13700137000@pstn-0000000a"


@pytest.mark.parametrize("technology", ON_TRUNKS, ids=ON_TRUNKS_IDS)
def test_care_call_the_network_rejects_is_failed(technology: Technology | None) -> None:
    """Variation of 05 as the sample dialplan (telephony/asterisk/extensions.conf: Dial, then
    Hangup) writes it: the far end declines (SIP 603, Q.850 cause 21, "call rejected"). Dial has no
    status for that cause and reports NOANSWER, as does the Originate's own dial; Asterisk saw no
    busy or congestion signal, so the OriginateResponse's Reason is 0."""
    frames = stamped_at(timeline(recording("05-originate-failed-busy")))
    frames = frames[: first(frames, "DialBegin", FAR_05.encode()) + 1]
    out, out_twin = last_seen(frames, OUT_05 + ";1"), last_seen(frames, OUT_05 + ";2")
    far, far_twin = last_seen(frames, FAR_05 + ";1"), last_seen(frames, FAR_05 + ";2")
    s = Script(float(frame_headers(frames[-1])["Timestamp"]) + 0.001)
    s.newexten(far_twin, "Hangup", "21")
    s.hangup(far_twin, 21)
    s.hangup(far, 21)
    s.dial_end(out_twin, far, "NOANSWER")
    out_twin.priority += 1
    s.newexten(out_twin, "Hangup", "")
    s.hangup(out_twin, 21)
    s.dial_end(None, out, "NOANSWER")
    s.originate_failed("carecall-0005", "Local/13700137000@outbound", "care-ivr", "s", 0)
    s.hangup(out, 21)
    (call,), tracker, _ = track(stream(on(technology, "05-originate-failed-busy", frames + s.frames)))
    assert tracker.calls == {}
    assert (call.direction, call.disposition, call.hangup_cause) == (
        Direction.OUTBOUND,
        Disposition.FAILED,
        21,
    )
    assert (call.called, call.attempt) == ("13700137000", "carecall-0005")


@pytest.mark.parametrize("technology", ON_TRUNKS, ids=ON_TRUNKS_IDS)
def test_callback_that_could_not_be_placed_is_tied_to_no_call(technology: Technology | None) -> None:
    """Variation of 04: while 8001's phone rings for callback-0004, a second callback through 8001
    (callback-0009) fails at once: Asterisk could not make its channel (Reason 0), so there is no
    Newchannel and no Hangup for it, only the OriginateResponse naming the channel it asked for."""
    name = "04-outbound-callback-answered"
    frames = stamped_at(timeline(recording(name)))
    ringing = first(frames, "Newstate", b"ChannelState: 5", b"Local/8001@operators-00000007;1") + 1
    s = Script(float(frame_headers(frames[ringing - 1])["Timestamp"]) + 1)
    s.originate_failed("callback-0009", "Local/8001@operators", "outbound", "13900139000", 0)
    frames[ringing:ringing] = s.frames
    (call,), tracker, _ = track(stream(on(technology, name, frames)))
    assert tracker.calls == {}
    assert call.attempt == "callback-0004"
    assert (call.disposition, call.operator, call.called) == (Disposition.ANSWERED, "8001", "13800138000")


@pytest.mark.parametrize("technology", ON_TRUNKS, ids=ON_TRUNKS_IDS)
@pytest.mark.parametrize(("goes_on", "wait"), [(0.0, 15), (5.0, 20)])
def test_queue_that_times_out_is_no_answer_not_abandoned(
    goes_on: float, wait: int, technology: Technology | None
) -> None:
    """Variation of 02 (`queue_times_out`): nobody answers, and the queue's timeout lets go of the
    caller, who had not given up; the dialplan hangs up at once, or after an announcement."""
    (call,), tracker, _ = track(stream(on(technology, NAME_02, queue_times_out(goes_on))))
    assert tracker.calls == {}
    assert (call.direction, call.disposition, call.queue, call.operator) == (
        Direction.INBOUND,
        Disposition.NO_ANSWER,
        "hotline",
        None,
    )
    assert (call.caller, call.did, call.wait_seconds, call.hangup_cause) == ("04716912345", "12349", wait, 16)


@pytest.mark.parametrize("technology", ON_TRUNKS, ids=ON_TRUNKS_IDS)
def test_caller_who_hangs_up_before_reaching_the_queue_abandoned(technology: Technology | None) -> None:
    """Variation of 02: the dialplan plays a welcome announcement before Queue(), and the caller
    hangs up 4 s into it: no queue event at all."""
    frames = stamped_at(timeline(recording(NAME_02)))
    frames = frames[: first(frames, "Newexten", b"Application: Queue\r\n")]
    caller, twin = last_seen(frames, CALLER_02), last_seen(frames, TWIN_02)
    s = Script(float(frame_headers(frames[-1])["Timestamp"]))
    s.newexten(twin, "Playback", "careline/welcome")
    s.after(4)
    s.hangup(caller)
    s.hangup(twin)
    (call,), tracker, _ = track(stream(on(technology, NAME_02, frames + s.frames)))
    assert tracker.calls == {}
    assert (call.disposition, call.queue, call.answered_at) == (Disposition.ABANDONED, None, None)
    assert (call.caller, call.did, call.wait_seconds, call.hangup_cause) == ("04716912345", "12349", 4, 16)


# -- transfers ---------------------------------------------------------------------------------------------


def blind_transfer(into_queue: bool) -> list[bytes]:
    """Recording 01 on PJSIP, then: after 6 s of talk Wang Fang (8001) blind-transfers the resident
    (REFER): the resident's channel leaves the queue's bridge for the dialplan (AgentComplete, Reason
    transfer; BlindTransfer) and 8001's channel hangs up. The dialplan Dials PJSIP/8002, or puts the
    resident back in the hotline queue (`into_queue`), which rings 8002 (Li Wei); 8002 answers after
    4 s, they talk 14 s, and the resident hangs up."""
    frames, caller, operator, bridge, at = talking_on_pjsip()
    s = Script(at).after(6)
    s.bridge_leave(bridge, 1, caller)
    s.agent_complete(caller, operator, "PJSIP/8001", "Wang Fang 8001", hold=3, talk=6, reason="transfer")
    extension, context = ("12349", "from-resident") if into_queue else ("8002", "operators")
    s.event(
        "BlindTransfer",
        [("Result", "Success")],
        operator.fields("Transferer"),
        caller.fields("Transferee"),
        bridge_fields(bridge, 1),
        [("IsExternal", "Yes"), ("Context", context), ("Extension", extension)],
    )
    s.bridge_leave(bridge, 0, operator)
    s.event("BridgeDestroy", bridge_fields(bridge, 0))
    s.hangup(operator)
    caller.context, caller.exten, caller.priority = context, extension, 1
    colleague = Channel(
        "PJSIP/8002-0000001c", "1795393755.4", caller.linkedid, "operators", "s", 0, "8002", "13800138000"
    )
    member = [("Queue", "hotline"), ("Interface", "PJSIP/8002"), ("MemberName", "Li Wei 8002")]
    if into_queue:
        s.newexten(caller, "Queue", "hotline,r,,,180")
        s.event(
            "QueueCallerJoin",
            caller.fields(),
            [("Queue", "hotline"), ("Position", "1"), ("Count", "1")],
            privilege="agent,all",
        )
        s.newchannel(colleague)
        s.event("AgentCalled", caller.fields(), colleague.fields("Dest"), member, privilege="agent,all")
    else:
        s.newexten(caller, "Dial", "PJSIP/8002,30")
        s.newchannel(colleague)
    s.dial_begin(caller, colleague, "PJSIP/8002")
    s.newstate(colleague, 5)
    s.after(4)
    s.newstate(colleague, 6)
    s.dial_end(caller, colleague, "ANSWER")
    if into_queue:
        s.queue_leave(caller)
        answered = [("HoldTime", "4"), ("RingTime", "4")]
        s.event(
            "AgentConnect", caller.fields(), colleague.fields("Dest"), member, answered, privilege="agent,all"
        )
    second_bridge = "e2c7d8a1-5b8e-4c3f-9a51-7d2b0c6e4f10"
    s.bridge(second_bridge, colleague, caller)
    s.after(14)
    if into_queue:
        s.agent_complete(caller, colleague, "PJSIP/8002", "Li Wei 8002", hold=4, talk=14, reason="caller")
    s.hangup(caller)
    s.bridge_leave(second_bridge, 1, colleague)
    s.hangup(colleague)
    return frames + s.frames


@pytest.mark.parametrize("into_queue", [False, True], ids=["to-a-phone", "back-into-the-queue"])
def test_blind_transfer_keeps_one_call_and_the_operator_who_answered(into_queue: bool) -> None:
    """Variation of 01 on PJSIP (`blind_transfer`): 8001 hands the resident to 8002 directly or
    through the queue again; the second member's AgentConnect and AgentComplete describe 8002's
    share, not the call's answer."""
    (call,), tracker, _ = track(stream(blind_transfer(into_queue)))
    assert tracker.calls == {}
    assert (call.disposition, call.operator, call.queue, call.wait_seconds) == (
        Disposition.ANSWERED,
        "8001",
        "hotline",
        3,
    )
    # the whole conversation, 8001's 6 s and 8002's, not AgentComplete's TalkTime (8001's alone)
    assert call.talk_seconds == 24
    assert call.hangup_cause == 16


@pytest.mark.parametrize("moves", ["target", "transferee"])
def test_attended_transfer_to_a_colleague_keeps_one_call_and_the_operator_who_answered(moves: str) -> None:
    """Variation of 01 on PJSIP (`attended_transfer`) to 8002: the consultation between two
    operators' phones is part of handling the resident's call, not a call of its own."""
    frames, _ = attended_transfer(moves, "8002")
    ended, tracker, reader = track(stream(frames))
    assert reader.skipped == 0
    assert tracker.calls == {}
    (call,) = ended
    assert call.linkedid == "1795393745.0"
    assert (call.disposition, call.operator, call.queue, call.wait_seconds) == (
        Disposition.ANSWERED,
        "8001",
        "hotline",
        3,
    )
    # from 8001's answer to the resident's hang-up: 6 s, the 7 s consultation, 20 s with 8002
    assert call.talk_seconds == 33
    assert call.hangup_cause == 16


def test_attended_transfer_to_a_number_outside_ends_the_consultation_as_a_call() -> None:
    """Variation of 01 on PJSIP (`attended_transfer`): 8001 consults the resident's daughter on
    13900139000 through the trunk and puts the resident through to her: the consultation is an
    outbound call of its own, which ends at the transfer; the resident's goes on to its hang-up."""
    frames, transferred = attended_transfer("target", "13900139000")
    ended, tracker, _ = track(stream(frames))
    assert tracker.calls == {}
    calls = {call.linkedid: call for call in ended}
    resident, consultation = calls["1795393745.0"], calls[CONSULTATION]
    assert (resident.disposition, resident.operator, resident.talk_seconds) == (
        Disposition.ANSWERED,
        "8001",
        33,
    )
    assert (consultation.direction, consultation.called, consultation.operator) == (
        Direction.OUTBOUND,
        "13900139000",
        "8001",
    )
    assert consultation.disposition is Disposition.ANSWERED
    assert consultation.ended_at == pytest.approx(transferred)


# -- a re-sync mid-call ------------------------------------------------------------------------------------


def connect(
    at: float,
    early: Sequence[bytes],
    rows: Sequence[tuple[Channel, str, str, str, int]],
    later: Sequence[bytes],
) -> tuple[list[Call], CallTracker]:
    """A manager session that logs in at `at` while calls are up: `early` comes before the answer to
    CoreShowChannels (`rows`, see `core_show_channels`), `later` after it."""
    tracker = CallTracker(RULES)
    reader = FrameReader()
    tracker.begin_resync()
    ended: dict[str, Call] = {}

    def feed(frames: Sequence[bytes]) -> list[AmiMessage]:
        messages = reader.feed(b"".join(f + b"\r\n\r\n" for f in frames), at)
        for message in messages:
            if isinstance(message, CallEvent):
                tracker.apply(message)
        return messages

    feed([b"Asterisk Call Manager/9.0.0\r\nResponse: Success\r\nMessage: Authentication accepted", *early])
    snapshot = [
        m for m in feed(core_show_channels("careline-pbx1-2", rows)) if isinstance(m, ChannelSnapshot)
    ]
    tracker.finish_resync(snapshot, at)
    feed(later)
    for call in tracker.take_changed():
        if call.ended_at is not None:
            ended[call.linkedid] = call
    return list(ended.values()), tracker


TRUNK_01, PHONE_01 = "PJSIP/trunk-0000001a", "PJSIP/8001-0000001b"


def pjsip_01_at(seconds: float) -> tuple[list[bytes], list[bytes], float]:
    """Recording 01 on PJSIP, cut where `seconds` after the session's start: before and after, and when."""
    frames = on_technology(NAME_01, stamped(NAME_01), PJSIP)
    at = recording(NAME_01).connected_epoch + seconds
    cut = next(i for i, f in enumerate(frames) if float(frame_headers(f).get("Timestamp", "0")) > at)
    return frames[:cut], frames[cut:], at


def test_resync_while_a_call_is_bridged_then_it_ends() -> None:
    """Variation of 01 on PJSIP: Careline's session begins 10 s in, while the resident and 8001 talk
    (up since 4 s): CoreShowChannels lists the trunk's channel in Queue() and 8001's phone, both in
    the queue's bridge, 9 s and 8 s old; then AgentComplete and the hang-ups come as events."""
    before, after, at = pjsip_01_at(10.0)
    bridge = frame_headers(next(f for f in reversed(before) if f.startswith(b"Event: BridgeEnter")))[
        "BridgeUniqueid"
    ]
    rows = [
        (last_seen(before, TRUNK_01), bridge, "Queue", "hotline,r,,,180", 9),
        (last_seen(before, PHONE_01), bridge, "AppQueue", "(Outgoing Line)", 8),
    ]
    (call,), tracker = connect(at, [], rows, after)
    assert tracker.calls == {}
    assert (call.direction, call.did, call.caller, call.queue, call.operator) == (
        Direction.INBOUND,
        "12349",
        "13800138000",
        "hotline",
        "8001",
    )
    assert (call.disposition, call.resynced, call.hangup_cause) == (Disposition.ANSWERED, True, 16)
    assert call.arrived_at == at - 9
    # Asterisk's AgentComplete (TalkTime 16 at 20.5 s) dates the answer the re-sync could only bound
    assert call.answered_at == pytest.approx(at - 10 + 20.503 - 16, abs=0.01)
    assert call.ended_at == pytest.approx(at - 10 + 20.504, abs=0.01)
    assert (call.wait_seconds, call.talk_seconds) == (3, 16)


def test_resync_while_a_call_rings_in_the_queue_then_it_is_answered() -> None:
    """Variation of 01 on PJSIP: the session begins 2.5 s in, while 8001's phone rings for the
    resident waiting in the queue: CoreShowChannels lists both, bridged to nobody; the answer
    (DialEnd, AgentConnect, the bridge) and the rest come as events."""
    before, after, at = pjsip_01_at(2.5)
    rows = [
        (last_seen(before, TRUNK_01), "", "Queue", "hotline,r,,,180", 2),
        (last_seen(before, PHONE_01), "", "AppQueue", "(Outgoing Line)", 1),
    ]
    (call,), tracker = connect(at, [], rows, after)
    assert tracker.calls == {}
    assert (call.disposition, call.queue, call.operator, call.resynced) == (
        Disposition.ANSWERED,
        "hotline",
        "8001",
        True,
    )
    assert call.answered_at == pytest.approx(at - 2.5 + 4.006, abs=0.01)
    assert (call.wait_seconds, call.talk_seconds) == (3, 16)


def test_resync_where_the_answer_came_before_the_snapshot() -> None:
    """Variation of 01 on PJSIP: the session begins 2.5 s in, while 8001's phone rings; 8001
    answers (4.0 s) before Asterisk has answered CoreShowChannels, so those events come first and
    wait for the snapshot (taken at 5 s), which lists the two bridged; the rest comes after."""
    before, _, at = pjsip_01_at(2.5)
    early, later, snapshot_at = pjsip_01_at(5.0)
    early = early[len(before) :]
    bridge = frame_headers(next(f for f in reversed(early) if f.startswith(b"Event: BridgeEnter")))[
        "BridgeUniqueid"
    ]
    rows = [
        (last_seen(before + early, TRUNK_01), bridge, "Queue", "hotline,r,,,180", 4),
        (last_seen(before + early, PHONE_01), bridge, "AppQueue", "(Outgoing Line)", 3),
    ]
    (call,), _ = connect(snapshot_at, early, rows, later)
    assert (call.disposition, call.operator) == (Disposition.ANSWERED, "8001")
    # the answer's own time, not the snapshot's
    assert call.answered_at == pytest.approx(at - 2.5 + 4.006, abs=0.01)
    assert (call.wait_seconds, call.talk_seconds) == (3, 16)


@pytest.mark.parametrize(
    ("dialled", "reached", "written"),
    [("8002", "PJSIP/8002-00000031", False), ("120", "PJSIP/trunk-00000031", True)],
    ids=["a-colleague", "the-ambulance-through-the-trunk"],
)
def test_a_call_from_an_operators_phone_is_written_when_it_dials_out(
    dialled: str, reached: str, written: bool
) -> None:
    """Not in any recording: Wang Fang (8001) dials from her PJSIP phone, either Li Wei (8002) or 120
    (the ambulance) through the trunk, too short a number to look like a phone's; it answers after
    2 s and they talk 30 s. A colleague rung is no hotline call; anyone reached through the trunk is."""
    uniqueid = "1795394000.40"
    s = Script(1_795_394_000.0)
    phone = Channel("PJSIP/8001-00000030", uniqueid, uniqueid, "operators", dialled, 4, "8001")
    s.newchannel(phone)
    dial_string = f"{dialled}@trunk" if reached.startswith("PJSIP/trunk") else f"PJSIP/{dialled}"
    s.newexten(phone, "Dial", f"{dial_string},60")
    far = Channel(reached, "1795394000.41", uniqueid, "operators", "s", 0, dialled, "8001")
    s.newchannel(far)
    s.dial_begin(phone, far, dial_string)
    s.newstate(far, 5)
    s.after(2)
    s.newstate(far, 6)
    s.dial_end(phone, far, "ANSWER")
    s.newstate(phone, 6)
    s.bridge("c3a1f0d2-7e4b-4a9c-8d21-5b6e0f9a3c47", far, phone)
    s.after(30)
    s.hangup(phone)
    s.bridge_leave("c3a1f0d2-7e4b-4a9c-8d21-5b6e0f9a3c47", 1, far)
    s.hangup(far)
    (call,), tracker, _ = track(stream(s.frames))
    assert tracker.calls == {}
    assert call.ready is written
    assert (call.direction, call.disposition, call.operator, call.talk_seconds) == (
        Direction.OUTBOUND,
        Disposition.ANSWERED,
        "8001",
        30,
    )
