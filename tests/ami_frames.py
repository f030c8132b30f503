"""Variations of the recordings that need what no recording holds: other channel technologies,
and the events of outcomes that were not recorded.

Frames are written as Asterisk 20 writes them, header for header in the order of the recorded
frames (the channel's fields after `Privilege`, a `Dest` copy for the dialled channel, the bridge's
fields before the channel's), noise included, and stamped as `timestampevents = yes` stamps them.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from telephony.simulator import Recording, frame_headers, render, stamp
from tests.ami_peer import recording

# -- the recordings on other channel technologies ---------------------------------------------------


NAME_01, NAME_02 = "01-inbound-queue-answered", "02-abandoned-in-queue"


# The recordings' Local pairs that stand in for a trunk or a phone: the pair's name, the Uniqueids of
# its ;1 and ;2, and whom it stands for ("caller" for the resident calling in, an extension for an
# operator's phone, "far" for the number Careline dialled out to).
STAND_INS: dict[str, list[tuple[str, str, str, str]]] = {
    "01-inbound-queue-answered": [
        ("Local/12349@from-resident-00000000", "1795393745.0", "1795393745.1", "caller"),
        ("Local/8001@operators-00000001", "1795393746.2", "1795393746.3", "8001"),
    ],
    "02-abandoned-in-queue": [
        ("Local/12349@from-resident-00000002", "1795393768.4", "1795393768.5", "caller"),
        ("Local/8001@operators-00000003", "1795393769.6", "1795393769.7", "8001"),
        ("Local/8002@operators-00000004", "1795393781.8", "1795393781.9", "8002"),
    ],
    "03-emergency-button-userevent": [
        ("Local/123491@from-resident-00000005", "1795393786.10", "1795393786.11", "caller"),
        ("Local/8001@operators-00000006", "1795393786.12", "1795393786.13", "8001"),
    ],
    "04-outbound-callback-answered": [
        ("Local/8001@operators-00000007", "1795393799.14", "1795393799.15", "8001"),
        ("Local/13800138000@pstn-00000008", "1795393802.16", "1795393802.17", "far"),
    ],
    "05-originate-failed-busy": [
        ("Local/13700137000@pstn-0000000a", "1795393819.20", "1795393819.21", "far")
    ],
    "06-originate-failed-no-answer": [
        ("Local/13600136000@pstn-0000000c", "1795393822.24", "1795393822.25", "far")
    ],
    "08-care-call-ivr-dtmf-userevent": [
        ("Local/13800138001@pstn-00000010", "1795393842.32", "1795393842.33", "far")
    ],
}


@dataclass(frozen=True)
class Technology:
    """How a channel driver names a trunk's channel and a phone's (`n` counts channels)."""

    name: str
    trunk: str  # with {n} and {number}
    phone: str  # with {n} and {extension}
    interface: str  # with {extension}


TECHNOLOGIES = [
    Technology("pjsip", "PJSIP/trunk-{n:08x}", "PJSIP/{extension}-{n:08x}", "PJSIP/{extension}"),
    Technology(
        "pjsip-named-trunk", "PJSIP/trunk-cmcc-{n:08x}", "PJSIP/{extension}-{n:08x}", "PJSIP/{extension}"
    ),
    Technology("chan_sip", "SIP/trunk-{n:08x}", "SIP/{extension}-{n:08x}", "SIP/{extension}"),
    Technology("iax2", "IAX2/trunk-{n}", "IAX2/{extension}-{n}", "IAX2/{extension}"),
    Technology("dahdi-pri", "DAHDI/i1/{number}-{n:x}", "PJSIP/{extension}-{n:08x}", "PJSIP/{extension}"),
    Technology("dahdi-analog", "DAHDI/1-1", "SIP/{extension}-{n:08x}", "SIP/{extension}"),
]


PJSIP = TECHNOLOGIES[0]


def on_technology(name: str, frames: Sequence[bytes], technology: Technology) -> list[bytes]:
    """The recording `name` as it reads when its trunk and phones are real channels, not Local pairs.

    A pair's ;1 is what the dialler sees and ;2 runs the far side's dialplan. A caller's trunk channel
    is the one running the hotline's dialplan (;2), created first (;1's Uniqueid, the call's root);
    a phone's or a dialled number's channel is the dialled one (;1). The other half's frames, and the
    LocalBridge that pairs them, are not sent by a real channel, so they go.
    """
    counter = itertools.count(0x1A)
    names: dict[str, str] = {}
    ids: dict[str, str] = {}
    gone: set[str] = set()
    for pair, one, two, role in STAND_INS[name]:
        number = pair.split("/", 1)[1].split("@", 1)[0]
        if role == "caller":
            names[f"{pair};2"] = technology.trunk.format(n=next(counter), number="13800138000")
            ids[two] = one
            gone.add(one)
        else:
            template = technology.trunk if role == "far" else technology.phone
            names[f"{pair};1"] = template.format(n=next(counter), number=number, extension=role)
            gone.add(two)
            if role != "far":
                names[f"Local/{role}@operators"] = technology.interface.format(extension=role)
    out = []
    for frame in frames:
        headers = frame_headers(frame)
        event = headers.get("Event", "")
        if event == "LocalBridge" or {headers.get("Uniqueid"), headers.get("DestUniqueid")} & gone:
            continue
        for old in sorted(names, key=len, reverse=True):
            frame = frame.replace(old.encode(), names[old].encode())
        for old, new in ids.items():
            frame = re.sub(
                rb"(Uniqueid|Linkedid): " + re.escape(old.encode()) + rb"\r\n",
                rb"\1: " + new.encode() + rb"\r\n",
                frame + b"\r\n",
            )[:-2]
        out.append(frame)
    return out


def timeline(recording: Recording) -> list[tuple[float, bytes]]:
    """The recording's frames, each with when it was sent (seconds since the epoch), unstamped."""
    base = recording.connected_epoch
    return [(base + t, frame) for frame, t in zip(recording.frames, recording.times, strict=True)]


def stamped_at(timed: Iterable[tuple[float, bytes]]) -> list[bytes]:
    return [stamp(frame, at) for at, frame in timed]


def first(frames: Iterable[bytes], event: str, *needles: bytes) -> int:
    """Where the first `event` frame holding all of `needles` is."""
    for index, frame in enumerate(frames):
        if frame.startswith(f"Event: {event}\r\n".encode()) and all(n in frame for n in needles):
            return index
    raise LookupError(event)


# -- events no recording holds, written as Asterisk 20 writes them ----------------------------------


Fields = list[tuple[str, str]]


STATE_DESC = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up", 7: "Busy"}


CAUSE_TEXT = {
    0: "Unknown",
    16: "Normal Clearing",
    17: "User busy",
    21: "Call Rejected",
    34: "Circuit/channel congestion",
}


@dataclass
class Channel:
    """One channel as its snapshot reads in every event about it."""

    name: str
    uniqueid: str
    linkedid: str
    context: str
    exten: str
    state: int = 0
    caller: str = "<unknown>"
    connected: str = "<unknown>"
    priority: int = 1

    def fields(self, prefix: str = "") -> Fields:
        return [
            (f"{prefix}Channel", self.name),
            (f"{prefix}ChannelState", str(self.state)),
            (f"{prefix}ChannelStateDesc", STATE_DESC[self.state]),
            (f"{prefix}CallerIDNum", self.caller),
            (f"{prefix}CallerIDName", self.caller),
            (f"{prefix}ConnectedLineNum", self.connected),
            (f"{prefix}ConnectedLineName", self.connected),
            (f"{prefix}Language", "en"),
            (f"{prefix}AccountCode", ""),
            (f"{prefix}Context", self.context),
            (f"{prefix}Exten", self.exten),
            (f"{prefix}Priority", str(self.priority)),
            (f"{prefix}Uniqueid", self.uniqueid),
            (f"{prefix}Linkedid", self.linkedid),
        ]


def bridge_fields(bridge: str, members: int, prefix: str = "Bridge") -> Fields:
    return [
        (f"{prefix}Uniqueid", bridge),
        (f"{prefix}Type", "basic"),
        (f"{prefix}Technology", "simple_bridge"),
        (f"{prefix}Creator", "<unknown>"),
        (f"{prefix}Name", "<unknown>"),
        (f"{prefix}NumChannels", str(members)),
        (f"{prefix}VideoSourceMode", "none"),
    ]


class Script:
    """Events written one after another, each stamped with the script's clock (`at`)."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.frames: list[bytes] = []

    def after(self, seconds: float) -> Script:
        self.at += seconds
        return self

    def event(self, name: str, *parts: Fields, privilege: str = "call,all") -> None:
        fields: Fields = [("Event", name), ("Privilege", privilege)]
        for part in parts:
            fields += part
        self.frames.append(stamp(render(fields)[:-2], self.at))

    # -- a channel's life -------------------------------------------------------------------------

    def newchannel(self, channel: Channel) -> None:
        self.event("Newchannel", channel.fields())
        self.event(
            "VarSet",
            channel.fields(),
            [("Variable", "CHANNEL(language)"), ("Value", "en")],
            privilege="dialplan,all",
        )

    def newexten(self, channel: Channel, application: str, data: str) -> None:
        self.event(
            "Newexten",
            channel.fields(),
            [("Extension", channel.exten), ("Application", application), ("AppData", data)],
            privilege="dialplan,all",
        )

    def newstate(self, channel: Channel, state: int) -> None:
        channel.state = state
        self.event("Newstate", channel.fields())

    def hangup(self, channel: Channel, cause: int = 16) -> None:
        self.event("HangupRequest", channel.fields(), [("Cause", str(cause))])
        self.event(
            "Hangup", channel.fields(), [("Cause", str(cause)), ("Cause-txt", CAUSE_TEXT.get(cause, ""))]
        )

    # -- dialling and bridging --------------------------------------------------------------------

    def dial_begin(self, caller: Channel | None, dest: Channel, dial_string: str) -> None:
        self.event(
            "DialBegin", caller.fields() if caller else [], dest.fields("Dest"), [("DialString", dial_string)]
        )

    def dial_end(self, caller: Channel | None, dest: Channel, status: str) -> None:
        self.event(
            "DialEnd", caller.fields() if caller else [], dest.fields("Dest"), [("DialStatus", status)]
        )

    def bridge_enter(self, bridge: str, members: int, channel: Channel, swap: Channel | None = None) -> None:
        swapped = [("SwapUniqueid", swap.uniqueid)] if swap else []
        self.event("BridgeEnter", bridge_fields(bridge, members), channel.fields(), swapped)

    def bridge_leave(self, bridge: str, members: int, channel: Channel) -> None:
        self.event("BridgeLeave", bridge_fields(bridge, members), channel.fields())

    def bridge(self, bridge: str, *channels: Channel) -> None:
        """A bridge made for `channels`, which enter it in that order."""
        self.event("BridgeCreate", bridge_fields(bridge, 0))
        for count, channel in enumerate(channels, start=1):
            self.bridge_enter(bridge, count, channel)

    # -- the queue ---------------------------------------------------------------------------------

    def queue_leave(self, caller: Channel, queue: str = "hotline") -> None:
        self.event(
            "QueueCallerLeave",
            caller.fields(),
            [("Queue", queue), ("Position", "1"), ("Count", "0")],
            privilege="agent,all",
        )

    def originate_failed(self, action_id: str, channel: str, context: str, exten: str, reason: int) -> None:
        """A failed Originate's OriginateResponse, laid out as recording 05's: no Uniqueid to give."""
        self.event(
            "OriginateResponse",
            [
                ("ActionID", action_id),
                ("Response", "Failure"),
                ("Channel", channel),
                ("Context", context),
                ("Exten", exten),
                ("Reason", str(reason)),
                ("Uniqueid", "<unknown>"),
                ("CallerIDNum", "12349"),
                ("CallerIDName", "12349"),
            ],
        )

    def agent_complete(
        self, caller: Channel, member: Channel, interface: str, name: str, hold: int, talk: int, reason: str
    ) -> None:
        self.event(
            "AgentComplete",
            caller.fields(),
            member.fields("Dest"),
            [
                ("Queue", "hotline"),
                ("Interface", interface),
                ("MemberName", name),
                ("HoldTime", str(hold)),
                ("TalkTime", str(talk)),
                ("Reason", reason),
            ],
            privilege="agent,all",
        )


def last_seen(frames: Iterable[bytes], name: str) -> Channel:
    """The channel named `name` as the last frame about it (or dialling it) saw it."""
    found: Channel | None = None
    for frame in frames:
        headers = frame_headers(frame)
        for prefix in ("", "Dest"):
            if headers.get(f"{prefix}Channel") == name and f"{prefix}Uniqueid" in headers:
                found = channel_of(headers, prefix)
    if found is None:
        raise LookupError(name)
    return found


def channel_of(headers: dict[str, str], prefix: str = "") -> Channel:
    """The channel an event is about (or its `Dest`), as the event saw it."""
    return Channel(
        name=headers[f"{prefix}Channel"],
        uniqueid=headers[f"{prefix}Uniqueid"],
        linkedid=headers[f"{prefix}Linkedid"],
        context=headers[f"{prefix}Context"],
        exten=headers[f"{prefix}Exten"],
        state=int(headers[f"{prefix}ChannelState"]),
        caller=headers[f"{prefix}CallerIDNum"],
        connected=headers[f"{prefix}ConnectedLineNum"],
        priority=int(headers[f"{prefix}Priority"]),
    )


# -- variations: outcomes no recording holds --------------------------------------------------------


CALLER_02, TWIN_02 = "Local/12349@from-resident-00000002;1", "Local/12349@from-resident-00000002;2"


def on_pjsip(name: str) -> list[bytes]:
    return on_technology(name, stamped_at(timeline(recording(name))), PJSIP)


def queue_times_out(goes_on: float) -> list[bytes]:
    """Recording 02 up to the moment its caller hung up (15.5 s); from there, what Asterisk writes when
    the queue's timeout ends the wait instead: 8002's ringing phone let go, QueueCallerLeave and no
    QueueCallerAbandon, then the dialplan after Queue() hangs up (after a `goes_on`-second
    announcement), and the caller's line with it."""
    timed = timeline(recording(NAME_02))
    gave_up = next(at for at, f in timed if f.startswith(b"Event: QueueCallerAbandon"))
    frames = stamped_at([(at, f) for at, f in timed if at < gave_up - 0.01])
    caller, twin = last_seen(frames, CALLER_02), last_seen(frames, TWIN_02)
    ringing = last_seen(frames, "Local/8002@operators-00000004;1")
    ringing_twin = last_seen(frames, "Local/8002@operators-00000004;2")
    s = Script(gave_up)
    s.dial_end(twin, ringing, "CANCEL")
    s.hangup(ringing, 0)
    s.hangup(ringing_twin, 0)
    s.queue_leave(twin)
    twin.priority += 1
    if goes_on:
        s.newexten(twin, "Playback", "careline/all-operators-busy")
        s.after(goes_on)
        twin.priority += 1
    s.newexten(twin, "Hangup", "")
    s.hangup(twin)
    s.hangup(caller)
    return frames + s.frames


def talking_on_pjsip() -> tuple[list[bytes], Channel, Channel, str, float]:
    """Recording 01 on PJSIP up to the moment the resident and Wang Fang (8001) are bridged: the
    frames, the resident's channel, 8001's, their bridge and the time."""
    frames = on_pjsip(NAME_01)
    frames = frames[: max(i for i, f in enumerate(frames) if f.startswith(b"Event: BridgeEnter")) + 1]
    bridged = frame_headers(frames[-1])
    caller = last_seen(frames, "PJSIP/trunk-0000001a")
    operator = last_seen(frames, "PJSIP/8001-0000001b")
    return frames, caller, operator, bridged["BridgeUniqueid"], float(bridged["Timestamp"])


CONSULTATION = "1795393756.4"


def moved(channel: Channel, **changes: object) -> Channel:
    return dataclasses.replace(channel, **changes)  # type: ignore[arg-type]


def attended_transfer(moves: str, target: str) -> tuple[list[bytes], float]:
    """Recording 01 on PJSIP, then: after 6 s of talk Wang Fang (8001) puts the resident on hold and
    calls `target` (8002, or a number outside through the trunk) from her phone's second line, a call
    with a Linkedid of its own; it answers in 2 s, they talk 5 s, and she completes the transfer
    (REFER with Replaces). Asterisk moves either the target's channel into the resident's bridge
    (`moves` "target") or the resident's into the consultation's ("transferee"); the channels that
    end up bridged take the older Linkedid, the resident's. 8001's two channels hang up; the resident
    and the target talk 20 s, then the resident hangs up. Returns the frames and when the transfer
    was done."""
    frames, caller, operator, first_bridge, at = talking_on_pjsip()
    second_bridge = "9b4d1f3e-0c2a-4e8b-b7d5-3f6a2e1c8d09"
    s = Script(at).after(6)
    s.event("Hold", operator.fields(), [("MusicClass", "default")])
    line2 = Channel("PJSIP/8001-0000001c", CONSULTATION, CONSULTATION, "operators", target, 4, "8001")
    s.newchannel(line2)
    outside = target != "8002"
    dialled = f"PJSIP/{target}@trunk" if outside else "PJSIP/8002"
    s.newexten(line2, "Dial", f"{dialled},30")
    name = "PJSIP/trunk-0000001d" if outside else "PJSIP/8002-0000001d"
    reached = Channel(name, "1795393756.5", CONSULTATION, "operators", "s", 0, target, "8001")
    s.newchannel(reached)
    s.dial_begin(line2, reached, dialled.split("/", 1)[1])
    s.newstate(reached, 5)
    s.after(2)
    s.newstate(reached, 6)
    s.dial_end(line2, reached, "ANSWER")
    s.newstate(line2, 6)
    s.bridge(second_bridge, reached, line2)
    s.after(5)
    transferred = s.at
    before = moved(reached)
    reached.linkedid = caller.linkedid
    if moves == "target":
        s.bridge_leave(second_bridge, 1, before)
        s.bridge_enter(first_bridge, 3, reached, swap=operator)
        s.bridge_leave(first_bridge, 2, operator)
        final, emptied, alone = first_bridge, second_bridge, line2
    else:
        s.bridge_leave(first_bridge, 1, caller)
        s.bridge_enter(second_bridge, 3, caller, swap=line2)
        s.bridge_leave(second_bridge, 2, line2)
        final, emptied, alone = second_bridge, first_bridge, operator
    s.agent_complete(caller, operator, "PJSIP/8001", "Wang Fang 8001", hold=3, talk=13, reason="transfer")
    s.event(
        "AttendedTransfer",
        [("Result", "Success")],
        operator.fields("OrigTransferer"),
        bridge_fields(first_bridge, 2, "OrigBridge"),
        line2.fields("SecondTransferer"),
        bridge_fields(second_bridge, 2, "SecondBridge"),
        [("DestType", "Bridge"), ("DestBridgeUniqueid", final)],
        caller.fields("Transferee"),
        before.fields("TransferTarget"),
        [("IsExternal", "Yes")],
    )
    s.bridge_leave(emptied, 0, alone)
    s.event("BridgeDestroy", bridge_fields(emptied, 0))
    s.hangup(operator)
    s.hangup(line2)
    s.after(20)
    s.hangup(caller)
    s.bridge_leave(final, 1, reached)
    s.hangup(reached)
    s.event("BridgeDestroy", bridge_fields(final, 0))
    return frames + s.frames, transferred


# -- the answer to CoreShowChannels -----------------------------------------------------------------


def core_show_channels(action_id: str, rows: Sequence[tuple[Channel, str, str, str, int]]) -> list[bytes]:
    """The answer to CoreShowChannels, as Asterisk 20 lists live channels: each row is a channel, the
    bridge it is in ('' for none), the application it runs and its data, and its age in seconds."""
    frames = [
        render(
            [
                ("Response", "Success"),
                ("ActionID", action_id),
                ("EventList", "start"),
                ("Message", "Channels will follow"),
            ]
        )
    ]
    for channel, bridge, application, data, seconds in rows:
        duration = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        frames.append(
            render(
                [
                    ("Event", "CoreShowChannel"),
                    ("ActionID", action_id),
                    *channel.fields(),
                    ("BridgeId", bridge),
                    ("Application", application),
                    ("ApplicationData", data),
                    ("Duration", duration),
                ]
            )
        )
    frames.append(
        render(
            [
                ("Event", "CoreShowChannelsComplete"),
                ("ActionID", action_id),
                ("EventList", "Complete"),
                ("ListItems", str(len(rows))),
            ]
        )
    )
    return [frame[:-2] for frame in frames]
