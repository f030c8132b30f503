"""The AMI wire format: frames in, typed records out; actions out.

An AMI stream is a banner line (`Asterisk Call Manager/9.0.0`) and then frames of
`Key: value` lines, each frame ended by a blank line. A busy Asterisk sends mostly
frames Careline has no use for (VarSet, Newexten, DeviceStateChange, ...): the
`FrameReader` finds the frames it wants with one compiled search over the bytes
received, so a skipped frame never becomes a Python object, and decodes only those.

panoramisk's codec is used where it fits: its `Message` decodes responses and user
events (a case-insensitive dict of every header, about 20 µs a frame here). Call
events, thousands a second, are split by a leaner reader into a plain dict for the
record's constructor, and the most frequent (the Newchannel of a call's other
channels, Hangup) are read from the few headers they need. In front of that, the
call events are read by one match each against the order Asterisk writes their
headers in (`FAST`); a frame laid out otherwise takes the general path, which
gives the same records (a test holds the two together).

Nothing from the wire raises out of here: a frame that lacks what its record needs,
or carries a number that is not one, is counted and skipped.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from panoramisk.message import Message

from telephony.ami_events import (
    AgentCompleted,
    AgentConnected,
    AmiMessage,
    BridgeJoined,
    CallerIdChanged,
    CallsJoined,
    ChannelAdded,
    ChannelCreated,
    ChannelHungUp,
    ChannelSnapshot,
    ChannelStateChanged,
    DialFinished,
    DialStarted,
    ListComplete,
    OriginateResult,
    QueueAbandoned,
    QueueJoined,
    QueueLeft,
    QueueMemberListed,
    Response,
    UserEventReceived,
)

log = logging.getLogger(__name__)

BANNER_PREFIX = "Asterisk Call Manager/"
# A frame this long without its end is not AMI: the buffer is dropped rather than grown forever.
MAX_PENDING_BYTES = 1 << 20
_UNKNOWN = frozenset({"", "<unknown>", "unknown", "anonymous", "<Unknown>"})

Headers = dict[str, str]


def _caller(value: str | None) -> str | None:
    return None if value is None or value.strip() in _UNKNOWN else value.strip()


def _optional_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _duration(value: str) -> int:
    """CoreShowChannel's Duration, HH:MM:SS (or plain seconds)."""
    if ":" in value:
        hours, minutes, seconds = (int(part) for part in value.split(":"))
        return hours * 3600 + minutes * 60 + seconds
    return int(value)


def _at(headers: Headers, received: float) -> float:
    """Asterisk's Timestamp (timestampevents = yes) when it is a plausible time, else `received`."""
    raw = headers.get("Timestamp")
    if raw is not None:
        try:
            value = float(raw)
        except ValueError:
            return received
        if math.isfinite(value) and 1e9 < value < 1e11:
            return value
    return received


def _unique_or_none(value: str | None) -> str | None:
    return None if value is None or value in _UNKNOWN else value


def _newchannel(h: Headers, at: float) -> ChannelCreated:
    return ChannelCreated(
        _at(h, at),
        h["Linkedid"],
        h["Uniqueid"],
        h["Channel"],
        _caller(h.get("CallerIDNum")),
        h.get("Exten", ""),
        h.get("Context", ""),
        int(h.get("ChannelState", "0")),
    )


def _newcallerid(h: Headers, at: float) -> CallerIdChanged:
    return CallerIdChanged(_at(h, at), h["Linkedid"], h["Uniqueid"], _caller(h.get("CallerIDNum")))


def _newstate(h: Headers, at: float) -> ChannelStateChanged:
    return ChannelStateChanged(_at(h, at), h["Linkedid"], h["Uniqueid"], int(h["ChannelState"]))


def _dialbegin(h: Headers, at: float) -> DialStarted:
    return DialStarted(
        _at(h, at),
        h.get("Linkedid") or h["DestLinkedid"],
        h.get("Uniqueid"),
        h["DestUniqueid"],
        h.get("DestChannel", ""),
        h.get("DestExten", ""),
        h.get("DialString", ""),
    )


def _dialend(h: Headers, at: float) -> DialFinished:
    return DialFinished(
        _at(h, at),
        h.get("Linkedid") or h["DestLinkedid"],
        h.get("Uniqueid"),
        h["DestUniqueid"],
        h.get("DestChannel", ""),
        h.get("DialStatus", ""),
    )


def _bridgeenter(h: Headers, at: float) -> BridgeJoined:
    return BridgeJoined(
        _at(h, at),
        h["Linkedid"],
        h["Uniqueid"],
        h.get("Channel", ""),
        h["BridgeUniqueid"],
        int(h.get("BridgeNumChannels", "0")),
    )


def _queuejoin(h: Headers, at: float) -> QueueJoined:
    return QueueJoined(_at(h, at), h["Linkedid"], h.get("Queue", ""))


def _queueabandon(h: Headers, at: float) -> QueueAbandoned:
    return QueueAbandoned(_at(h, at), h["Linkedid"], h.get("Queue", ""), _optional_int(h.get("HoldTime")))


def _queueleave(h: Headers, at: float) -> QueueLeft:
    return QueueLeft(_at(h, at), h["Linkedid"], h.get("Queue", ""))


def _agentconnect(h: Headers, at: float) -> AgentConnected:
    return AgentConnected(
        _at(h, at),
        h["Linkedid"],
        h.get("Queue", ""),
        h.get("Interface", ""),
        h.get("MemberName", ""),
        _optional_int(h.get("HoldTime")),
    )


def _agentcomplete(h: Headers, at: float) -> AgentCompleted:
    return AgentCompleted(
        _at(h, at),
        h["Linkedid"],
        _optional_int(h.get("HoldTime")),
        _optional_int(h.get("TalkTime")),
        h.get("Reason") == "transfer",
    )


def _attendedtransfer(h: Headers, at: float) -> CallsJoined:
    # The transferee and the target are named when they were in bridges (the usual case); the
    # transferers' own linkedids, always there, are the same two calls otherwise.
    return CallsJoined(
        _at(h, at),
        h.get("Result") == "Success",
        h.get("TransfereeLinkedid") or h["OrigTransfererLinkedid"],
        h.get("TransferTargetLinkedid") or h["SecondTransfererLinkedid"],
    )


def _hangup(h: Headers, at: float) -> ChannelHungUp:
    return ChannelHungUp(_at(h, at), h["Linkedid"], h["Uniqueid"], _optional_int(h.get("Cause")) or 0)


def _coreshowchannel(h: Headers, at: float) -> ChannelSnapshot:
    return ChannelSnapshot(
        h["ActionID"],
        h["Linkedid"],
        h["Uniqueid"],
        h["Channel"],
        _caller(h.get("CallerIDNum")),
        h.get("Exten", ""),
        h.get("Context", ""),
        int(h.get("ChannelState", "0")),
        h.get("BridgeId") or None,
        h.get("Application", ""),
        h.get("ApplicationData", ""),
        _duration(h.get("Duration", "0")),
    )


def _queuemember(h: Headers, at: float) -> QueueMemberListed:
    return QueueMemberListed(
        h["ActionID"],
        h.get("Queue", ""),
        h.get("Name", ""),
        h.get("Location") or h.get("Interface", ""),
        h.get("Paused", "0") == "1",
        _optional_int(h.get("Status")),
    )


def _complete(h: Headers, at: float) -> ListComplete:
    return ListComplete(h["ActionID"], h["Event"], _optional_int(h.get("ListItems")))


def _originateresponse(h: Headers, at: float) -> OriginateResult:
    return OriginateResult(
        _at(h, at),
        h["ActionID"],
        h.get("Response", "") == "Success",
        _optional_int(h.get("Reason")),
        _unique_or_none(h.get("Uniqueid")),
        h.get("Channel", ""),
    )


# Fields of a UserEvent that Asterisk adds about the channel, not the dialplan's own.
_CHANNEL_FIELDS = frozenset(
    {
        "Event",
        "Privilege",
        "Timestamp",
        "Channel",
        "ChannelState",
        "ChannelStateDesc",
        "CallerIDNum",
        "CallerIDName",
        "ConnectedLineNum",
        "ConnectedLineName",
        "Language",
        "AccountCode",
        "Context",
        "Exten",
        "Priority",
        "Uniqueid",
        "Linkedid",
        "UserEvent",
    }
)


def _message_headers(frame: bytes) -> Headers | None:
    message = Message.from_line(frame.decode("utf-8", "replace"))
    if message is None:
        return None
    # A repeated header (ChanVariable) comes as a list; the records use the first value.
    # `content` is panoramisk's own slot for a command's body, not a header.
    return {
        key: str(value[0] if isinstance(value, list) else value)
        for key, value in message.items()
        if key != "content"
    }


def _userevent(frame: bytes, at: float) -> UserEventReceived | None:
    headers = _message_headers(frame)
    if headers is None or "UserEvent" not in headers:
        return None
    return UserEventReceived(
        _at(headers, at),
        headers["UserEvent"],
        _unique_or_none(headers.get("Linkedid")),
        {key: value for key, value in headers.items() if key not in _CHANNEL_FIELDS},
    )


def _response(frame: bytes) -> Response | None:
    headers = _message_headers(frame)
    if headers is None or "Response" not in headers:
        return None
    return Response(
        headers.get("ActionID") or None,
        headers["Response"] in ("Success", "Goodbye", "Follows"),
        headers.get("Message", ""),
        headers,
    )


Decoder = Callable[[Headers, float], AmiMessage]

DECODERS: dict[bytes, Decoder] = {
    b"Newchannel": _newchannel,
    b"NewCallerid": _newcallerid,
    b"Newstate": _newstate,
    b"DialBegin": _dialbegin,
    b"DialEnd": _dialend,
    b"BridgeEnter": _bridgeenter,
    b"QueueCallerJoin": _queuejoin,
    b"QueueCallerAbandon": _queueabandon,
    b"QueueCallerLeave": _queueleave,
    b"AgentConnect": _agentconnect,
    b"AgentComplete": _agentcomplete,
    b"AttendedTransfer": _attendedtransfer,
    b"Hangup": _hangup,
    b"OriginateResponse": _originateresponse,
    b"CoreShowChannel": _coreshowchannel,
    b"CoreShowChannelsComplete": _complete,
    b"QueueMember": _queuemember,
    b"QueueStatusComplete": _complete,
}
_WANTED = (*DECODERS, b"UserEvent")
# The tracker uses these only about a call's first channel (its caller ID, its answer); the other
# channels' ones (several a call) are dropped on two header lookups instead of a full decode.
_ROOT_ONLY = frozenset({b"NewCallerid", b"Newstate"})
_LIGHT = frozenset({b"Newchannel", b"Hangup"})
_UNIQUEID = b"\r\nUniqueid: "
_LINKEDID = b"\r\nLinkedid: "


def _value(frame: bytes, needle: bytes) -> bytes | None:
    start = frame.find(needle)
    if start < 0:
        return None
    start += len(needle)
    end = frame.find(b"\r\n", start)
    return frame[start:] if end < 0 else frame[start:end]


def _about_root(frame: bytes) -> bool:
    uniqueid = _value(frame, _UNIQUEID)
    # without both ids the full decode decides (and skips it as malformed)
    return uniqueid is None or uniqueid == _value(frame, _LINKEDID)


def _timestamp(frame: bytes, received: float) -> float:
    raw = _value(frame, b"\r\nTimestamp: ")
    return received if raw is None else _at({"Timestamp": raw.decode("ascii", "replace")}, received)


def _light(frame: bytes, received: float) -> ChannelAdded | ChannelHungUp | None:
    """Newchannel of a call's other channels, and every Hangup: four headers, read without a full split.

    None when the frame needs the full decode (a call's first channel, or an id missing).
    """
    uniqueid = _value(frame, _UNIQUEID)
    linkedid = _value(frame, _LINKEDID)
    if uniqueid is None or linkedid is None:
        return None
    if frame.startswith(b"Event: Hangup"):
        cause = _value(frame, b"\r\nCause: ")
        return ChannelHungUp(
            _timestamp(frame, received),
            linkedid.decode("utf-8", "replace"),
            uniqueid.decode("utf-8", "replace"),
            _optional_int(cause.decode("ascii", "replace")) or 0 if cause is not None else 0,
        )
    if uniqueid == linkedid:
        return None
    return ChannelAdded(
        _timestamp(frame, received), linkedid.decode("utf-8", "replace"), uniqueid.decode("utf-8", "replace")
    )


class _Unusual(Exception):
    """A frame not laid out as Asterisk writes it: read it with the general decoder instead."""


def _layout(event: str, *keys: str) -> re.Pattern[str]:
    """One event's frame as Asterisk writes it: `keys` in this order with any lines between, and
    `Timestamp` (timestampevents = yes) right after `Privilege`. The groups are the timestamp
    (None when absent) and then the values of `keys`. A line break other than CRLF fails the match."""
    lines = r"(?:.*\r\n)*?"
    head = rf"Event: {event}\r\n(?:Privilege: .*\r\n)?(?:Timestamp: (.*)\r\n)?"
    body = "".join(rf"{lines}{key}: (.*)\r\n" for key in keys[:-1])
    return re.compile(rf"{head}{body}{lines}{keys[-1]}: (.*)(?:\r\n|\Z)")


def _stamp(raw: str | None, text: str, received: float) -> float:
    """`_at` for a timestamp read from Asterisk's layout (one elsewhere in the frame: _Unusual)."""
    if raw is None:
        if "\nTimestamp: " in text:
            raise _Unusual
        return received
    try:
        value = float(raw)
    except ValueError:
        return received
    return value if math.isfinite(value) and 1e9 < value < 1e11 else received


_NEWCHANNEL = _layout(
    "Newchannel", "Channel", "ChannelState", "CallerIDNum", "Context", "Exten", "Uniqueid", "Linkedid"
)
_HANGUP = _layout("Hangup", "Uniqueid", "Linkedid", "Cause")
_NEWSTATE = _layout("Newstate", "ChannelState", "Uniqueid", "Linkedid")
_NEWCALLERID = _layout("NewCallerid", "CallerIDNum", "Uniqueid", "Linkedid")
_BRIDGEENTER = _layout(
    "BridgeEnter", "BridgeUniqueid", "BridgeNumChannels", "Channel", "Uniqueid", "Linkedid"
)
_DIALBEGIN = _layout(
    "DialBegin", "Uniqueid", "Linkedid", "DestChannel", "DestExten", "DestUniqueid", "DialString"
)
_DIALEND = _layout("DialEnd", "Uniqueid", "Linkedid", "DestChannel", "DestUniqueid", "DialStatus")
_QUEUEJOIN = _layout("QueueCallerJoin", "Linkedid", "Queue")
_QUEUEABANDON = _layout("QueueCallerAbandon", "Linkedid", "Queue", "HoldTime")
_QUEUELEAVE = _layout("QueueCallerLeave", "Linkedid", "Queue")
_AGENTCONNECT = _layout("AgentConnect", "Linkedid", "Queue", "Interface", "MemberName", "HoldTime")
_AGENTCOMPLETE = _layout("AgentComplete", "Linkedid", "HoldTime", "TalkTime", "Reason")


def _groups(layout: re.Pattern[str], text: str) -> tuple[str, ...]:
    found = layout.match(text)
    if found is None:
        raise _Unusual
    return found.groups()


def _fast_newchannel(text: str, received: float) -> AmiMessage | None:
    at, channel, state, caller, context, exten, uniqueid, linkedid = _groups(_NEWCHANNEL, text)
    if uniqueid != linkedid:
        return ChannelAdded(_stamp(at, text, received), linkedid, uniqueid)
    return ChannelCreated(
        _stamp(at, text, received), linkedid, uniqueid, channel, _caller(caller), exten, context, int(state)
    )


def _fast_hangup(text: str, received: float) -> AmiMessage | None:
    at, uniqueid, linkedid, cause = _groups(_HANGUP, text)
    return ChannelHungUp(_stamp(at, text, received), linkedid, uniqueid, _optional_int(cause) or 0)


def _fast_newstate(text: str, received: float) -> AmiMessage | None:
    at, state, uniqueid, linkedid = _groups(_NEWSTATE, text)
    if uniqueid != linkedid:
        return None
    return ChannelStateChanged(_stamp(at, text, received), linkedid, uniqueid, int(state))


def _fast_newcallerid(text: str, received: float) -> AmiMessage | None:
    at, caller, uniqueid, linkedid = _groups(_NEWCALLERID, text)
    if uniqueid != linkedid:
        return None
    return CallerIdChanged(_stamp(at, text, received), linkedid, uniqueid, _caller(caller))


def _fast_bridgeenter(text: str, received: float) -> AmiMessage | None:
    at, bridge, members, channel, uniqueid, linkedid = _groups(_BRIDGEENTER, text)
    return BridgeJoined(_stamp(at, text, received), linkedid, uniqueid, channel, bridge, int(members))


def _fast_dialbegin(text: str, received: float) -> AmiMessage | None:
    at, uniqueid, linkedid, dest_channel, dest_exten, dest_uniqueid, dial_string = _groups(_DIALBEGIN, text)
    if not linkedid:
        raise _Unusual
    return DialStarted(
        _stamp(at, text, received), linkedid, uniqueid, dest_uniqueid, dest_channel, dest_exten, dial_string
    )


def _fast_dialend(text: str, received: float) -> AmiMessage | None:
    at, uniqueid, linkedid, dest_channel, dest_uniqueid, status = _groups(_DIALEND, text)
    if not linkedid:
        raise _Unusual
    return DialFinished(_stamp(at, text, received), linkedid, uniqueid, dest_uniqueid, dest_channel, status)


def _fast_queuejoin(text: str, received: float) -> AmiMessage | None:
    at, linkedid, queue = _groups(_QUEUEJOIN, text)
    return QueueJoined(_stamp(at, text, received), linkedid, queue)


def _fast_queueabandon(text: str, received: float) -> AmiMessage | None:
    at, linkedid, queue, hold = _groups(_QUEUEABANDON, text)
    return QueueAbandoned(_stamp(at, text, received), linkedid, queue, _optional_int(hold))


def _fast_queueleave(text: str, received: float) -> AmiMessage | None:
    at, linkedid, queue = _groups(_QUEUELEAVE, text)
    return QueueLeft(_stamp(at, text, received), linkedid, queue)


def _fast_agentconnect(text: str, received: float) -> AmiMessage | None:
    at, linkedid, queue, interface, member, hold = _groups(_AGENTCONNECT, text)
    return AgentConnected(_stamp(at, text, received), linkedid, queue, interface, member, _optional_int(hold))


def _fast_agentcomplete(text: str, received: float) -> AmiMessage | None:
    at, linkedid, hold, talk, reason = _groups(_AGENTCOMPLETE, text)
    return AgentCompleted(
        _stamp(at, text, received), linkedid, _optional_int(hold), _optional_int(talk), reason == "transfer"
    )


# The call events of every call, read straight from Asterisk's layout: one match a frame instead of
# a dict of every header. None: the event is not for the tracker (another channel's Newstate);
# _Unusual, or a value that is not a number: the general decoder below reads (or skips) the frame.
FastDecoder = Callable[[str, float], AmiMessage | None]
FAST: dict[bytes | None, FastDecoder] = {
    b"Newchannel": _fast_newchannel,
    b"Hangup": _fast_hangup,
    b"Newstate": _fast_newstate,
    b"NewCallerid": _fast_newcallerid,
    b"BridgeEnter": _fast_bridgeenter,
    b"DialBegin": _fast_dialbegin,
    b"DialEnd": _fast_dialend,
    b"QueueCallerJoin": _fast_queuejoin,
    b"QueueCallerAbandon": _fast_queueabandon,
    b"QueueCallerLeave": _fast_queueleave,
    b"AgentConnect": _fast_agentconnect,
    b"AgentComplete": _fast_agentcomplete,
}


# A frame Careline wants starts right after a blank line with one of these first lines.
_FRAME_START = re.compile(
    rb"\r\n\r\n(?:Event: (" + b"|".join(re.escape(name) for name in _WANTED) + rb")\r\n|Response: )"
)


def _headers(frame: bytes) -> Headers:
    text = frame.decode("utf-8", "replace")
    # The common case in C: every line is exactly "Key: value", so splitting on both separators
    # alternates keys and values. A line without ": " (an empty "Key:", garbage) or a value
    # holding ": " breaks the count, and the frame is read line by line instead.
    parts = text.replace("\r\n", ": ").split(": ")
    if len(parts) == 2 * (text.count("\r\n") + 1):
        pairs = iter(parts)
        return dict(zip(pairs, pairs, strict=True))
    headers: Headers = {}
    for line in text.split("\r\n"):
        key, sep, value = line.partition(": ")
        if sep:
            headers[key] = value
        elif line.endswith(":"):
            headers[line[:-1]] = ""
    return headers


class FrameReader:
    """Bytes from the socket in, the AMI records Careline uses out, in order.

    `banner` is the first line once it has arrived; `skipped` counts frames that were
    wanted but could not be read (truncated, a field missing or not a number).
    """

    def __init__(self) -> None:
        # A frame always follows a blank line; starting with one makes the first frame do so too.
        self._pending = b"\r\n\r\n"
        self._banner_seen = False
        self.banner: str | None = None
        self.skipped = 0
        self.frames = 0
        self.dropped_bytes = 0

    def feed(self, data: bytes, received: float) -> list[AmiMessage]:
        """Decode every complete frame in the stream so far; `received` dates untimestamped events."""
        buffer = self._pending + data
        if not self._banner_seen:
            end = buffer.find(b"\r\n", 4)
            if end < 0:
                self._pending = self._limit(buffer)
                return []
            self.banner = buffer[4:end].decode("utf-8", "replace")
            self._banner_seen = True
            buffer = b"\r\n\r\n" + buffer[end + 2 :]
        last = buffer.rfind(b"\r\n\r\n")
        out: list[AmiMessage] = []
        if last > 0:
            fast_decoders = FAST
            for match in _FRAME_START.finditer(buffer, 0, last + 4):
                start = match.start() + 4
                end = buffer.find(b"\r\n\r\n", start)
                name = match.group(1)
                fast = fast_decoders.get(name)
                if fast is not None:
                    try:
                        message = fast(buffer[start:end].decode("utf-8", "replace"), received)
                    except (_Unusual, ValueError):
                        pass  # laid out otherwise than Asterisk writes it: the general decoder reads it
                    else:
                        if message is not None:
                            out.append(message)
                        continue
                frame = buffer[start:end]
                if name in _ROOT_ONLY and not _about_root(frame):
                    continue
                message = (_light(frame, received) if name in _LIGHT else None) or self._decode(
                    name, frame, received
                )
                if message is not None:
                    out.append(message)
            self.frames += len(out)
            buffer = buffer[last:]
        self._pending = self._limit(buffer)
        return out

    def _limit(self, buffer: bytes) -> bytes:
        if len(buffer) <= MAX_PENDING_BYTES:
            return buffer
        self.dropped_bytes += len(buffer)
        self.skipped += 1
        log.warning("dropped %d bytes that never ended an AMI frame", len(buffer))
        return b"\r\n\r\n"

    def _decode(self, name: bytes | None, frame: bytes, received: float) -> AmiMessage | None:
        try:
            if name is None:
                message: AmiMessage | None = _response(frame)
            elif name == b"UserEvent":
                message = _userevent(frame, received)
            else:
                message = DECODERS[name](_headers(frame), received)
        except KeyError as exc:
            message, reason = None, f"no {exc.args[0]} header"
        except (ValueError, TypeError):
            # the exception would quote the value, and a value may be a phone number
            message, reason = None, "a header that should be a number is not one"
        else:
            reason = "unreadable"
        if message is None:
            self.skipped += 1
            if self.skipped <= 10 or self.skipped % 1000 == 0:
                # The frame's content may hold phone numbers: say what it was, not what it said.
                event = (name or b"Response").decode("ascii", "replace")
                log.warning(
                    "skipped a malformed %s frame (%s); %d skipped so far", event, reason, self.skipped
                )
        return message


def encode_action(fields: Mapping[str, Any]) -> bytes:
    """One action as the bytes to write: `Key: value` lines (a list repeats its key), then a blank line.

    Written here rather than with panoramisk's `Action`, which makes an asyncio Future and takes an
    ActionID from a global counter each time it is built. A value holding CR or LF would forge
    headers, so it is refused.
    """
    lines = []
    for key, value in fields.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            line = f"{key}: {item}"
            if "\r" in line or "\n" in line:
                raise ValueError(f"AMI action field {key} holds a line break")
            lines.append(line)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
