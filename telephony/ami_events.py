"""What Asterisk tells us over AMI, as frozen typed records.

Each record is built once, at the edge (`telephony/ami_codec.py`), from the few
headers Careline uses; nothing past the codec sees a raw AMI header or a `''`
standing for a missing one. `at` is seconds since the epoch: Asterisk's own
`Timestamp` header when the manager has `timestampevents = yes`, else when the
frame was read.

The channel events, tens of thousands a second from a busy Asterisk, are typed named
tuples: as immutable as a frozen dataclass and a fraction of the cost to make (a frozen
dataclass sets each field through `object.__setattr__`; in the AMI bench the named tuples
took 8% off Careline's time reading events). Being tuples, two of different kinds with the
same values compare equal: tell them apart by type, as the tracker does. The rest (answers
to actions, user events: a few a call or a login) stay frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple


class ChannelCreated(NamedTuple):
    """Newchannel."""

    at: float
    linkedid: str
    uniqueid: str
    channel: str
    caller: str | None
    exten: str
    context: str
    state: int


class ChannelAdded(NamedTuple):
    """Newchannel of a channel that is not the call's first (an operator's leg, a Local twin):
    the tracker only counts it, so only its ids are read."""

    at: float
    linkedid: str
    uniqueid: str


class CallerIdChanged(NamedTuple):
    """NewCallerid."""

    at: float
    linkedid: str
    uniqueid: str
    caller: str | None


class ChannelStateChanged(NamedTuple):
    """Newstate (4 ring, 5 ringing, 6 up, 7 busy)."""

    at: float
    linkedid: str
    uniqueid: str
    state: int


class DialStarted(NamedTuple):
    """DialBegin. `uniqueid` is the dialling channel, None when an Originate dials with no channel."""

    at: float
    linkedid: str
    uniqueid: str | None
    dest_uniqueid: str
    dest_channel: str
    dest_exten: str
    dial_string: str


class DialFinished(NamedTuple):
    """DialEnd: ANSWER, BUSY, NOANSWER, CANCEL, CONGESTION, CHANUNAVAIL, ..."""

    at: float
    linkedid: str
    uniqueid: str | None
    dest_uniqueid: str
    dest_channel: str
    status: str


class BridgeJoined(NamedTuple):
    """BridgeEnter; `members` is how many channels the bridge holds now."""

    at: float
    linkedid: str
    uniqueid: str
    channel: str
    bridge: str
    members: int


class QueueJoined(NamedTuple):
    """QueueCallerJoin."""

    at: float
    linkedid: str
    queue: str


class QueueAbandoned(NamedTuple):
    """QueueCallerAbandon: the caller hung up while waiting; Asterisk's hold time in seconds."""

    at: float
    linkedid: str
    queue: str
    hold_seconds: int | None


class QueueLeft(NamedTuple):
    """QueueCallerLeave: the caller is out of the queue, whether a member took the call, the caller
    hung up (after QueueCallerAbandon) or the queue let go of it (its timeout, no member to ring)."""

    at: float
    linkedid: str
    queue: str


class AgentConnected(NamedTuple):
    """AgentConnect: a queue member took the call."""

    at: float
    linkedid: str
    queue: str
    interface: str
    member: str
    hold_seconds: int | None


class AgentCompleted(NamedTuple):
    """AgentComplete: the member's conversation ended; Asterisk's talk time in seconds.
    `transferred` (Reason: transfer): the member handed the caller on, and the call goes on."""

    at: float
    linkedid: str
    hold_seconds: int | None
    talk_seconds: int | None
    transferred: bool = False


class ChannelHungUp(NamedTuple):
    """Hangup, with its Q.850 cause (0 when Asterisk does not know one)."""

    at: float
    linkedid: str
    uniqueid: str
    cause: int


@dataclass(frozen=True, slots=True)
class CallsJoined:
    """AttendedTransfer: the transferer's two calls became one conversation (a few a day, so a
    dataclass). `linkedid` is the transferee's call (the one put on hold), `other` the transfer
    target's (the consultation); `joined` is false when the transfer failed."""

    at: float
    joined: bool
    linkedid: str
    other: str


@dataclass(frozen=True, slots=True)
class UserEventReceived:
    """UserEvent raised by the dialplan (EmergencyButton, CareCallResult); fields as sent."""

    at: float
    name: str
    linkedid: str | None
    fields: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class OriginateResult:
    """OriginateResponse: how an asynchronous Originate ended (Reason 0/1/3/4/5/8)."""

    at: float
    action_id: str
    success: bool
    reason: int | None
    uniqueid: str | None
    channel: str


@dataclass(frozen=True, slots=True)
class ChannelSnapshot:
    """CoreShowChannel: one live channel in the answer to CoreShowChannels (a re-sync)."""

    action_id: str
    linkedid: str
    uniqueid: str
    channel: str
    caller: str | None
    exten: str
    context: str
    state: int
    bridge: str | None
    application: str
    application_data: str
    duration_seconds: int


@dataclass(frozen=True, slots=True)
class QueueMemberListed:
    """QueueMember: one member in the answer to QueueStatus."""

    action_id: str
    queue: str
    name: str
    interface: str
    paused: bool
    status: int | None


@dataclass(frozen=True, slots=True)
class ListComplete:
    """The `...Complete` event that ends the event list of an action."""

    action_id: str
    event: str
    items: int | None


@dataclass(frozen=True, slots=True)
class Response:
    """The answer to an action: Success/Goodbye/Follows, or Error with its message."""

    action_id: str | None
    success: bool
    message: str
    headers: Mapping[str, str]


ChannelEvent = (
    ChannelCreated
    | ChannelAdded
    | CallerIdChanged
    | ChannelStateChanged
    | DialStarted
    | DialFinished
    | BridgeJoined
    | QueueJoined
    | QueueAbandoned
    | QueueLeft
    | AgentConnected
    | AgentCompleted
    | ChannelHungUp
)
CallEvent = ChannelEvent | CallsJoined | UserEventReceived
ListItem = ChannelSnapshot | QueueMemberListed
AmiMessage = CallEvent | OriginateResult | ListItem | ListComplete | Response
