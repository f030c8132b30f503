"""Call tracking: typed AMI events in, calls out. Pure correlation, no I/O, no clock.

Asterisk gives every channel of one call the same Linkedid (the Uniqueid of the
call's first channel, its root): the caller's trunk channel, the queue's Local
channels, the operator's phone, both legs of a callback. A call opens with its
root's Newchannel and ends when the last of its channels hangs up; in between it
is answered when a person takes it:

- inbound (it started on a hotline or emergency DID, or in an inbound context):
  when a queue member connects (AgentConnect), a dialled phone answers (DialEnd
  ANSWER) or a bridge holds two of its channels; the operator is that member or phone.
- outbound (everything else, callbacks and care calls included): when the far end
  answers. When the root is an operator's phone rung first (a callback) the call
  counts from the moment that phone answered, as Asterisk's CDR counts billsec.

Whatever the channel technology, a phone's channel names its extension
(`PJSIP/8001-0000001b`, `SIP/8001-00000abc`, `IAX2/8001-4097`, `Local/8001@operators-…;1`)
and a trunk's does not (`PJSIP/trunk-cmcc-00000012`, `DAHDI/i1/13800138000-1a`,
`DAHDI/1-1`); a queue member's name says who answered when its channel cannot. A call
between operators' phones (a colleague rung) is followed but is no hotline call: it
is never made ready, so never written.

Waiting and talking times are Asterisk's own queue figures when it gives them
(HoldTime of QueueCallerAbandon/AgentConnect, TalkTime of AgentComplete), else the
difference of the event times. A transfer keeps the call one call, answered by the
operator who answered it: a blind transfer sends the caller's channel on in the
dialplan under the same Linkedid; an attended one joins the operator's consultation
call to the caller's (AttendedTransfer), whose Linkedid the bridged channels take, so
the consultation is folded into the caller's call. The talk then runs to the end of
the call: AgentComplete's TalkTime (Reason transfer) is the first operator's share.

The disposition of an unanswered call:

- inbound: abandoned when the caller hung up waiting in the queue (QueueCallerAbandon)
  or before reaching it (in a greeting, an IVR); no_answer when the queue let go of the
  caller unanswered without their hanging up (QueueCallerLeave with no abandon: the
  queue's timeout, no member left to ring), whether the dialplan then hangs up or plays
  on. That call was the hotline not answering, not a caller giving up, and the figures
  that count abandoned calls must not put it on the caller. Busy or failed when the
  Q.850 cause says so.
- outbound: the far end's Q.850 cause when it names an outcome (17 busy, 18/19 no
  answer, 21 rejected, 34 and the like failed), else the Dial status: Dial has no
  status for most causes and reports them, a rejection among them, as NOANSWER.

After a link outage (and at every login) the link asks for every live channel
(CoreShowChannels) and `finish_resync` reconciles: a call that is gone ends, one begun
during the outage opens, one answered during it is answered, at the re-sync's time
until the answer's own event (one that came before the snapshot and waited for it) or
Asterisk's talk time dates it. A call the database still had open at a restart is
settled the same way: it knows none of its channels, so its events wait for the
snapshot too. Events are never trusted to be complete or in order: a channel seen hung
up is never brought back, events of an ended call are dropped, a call whose root frame
was lost opens from its other channels.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from telephony.ami_events import (
    AgentCompleted,
    AgentConnected,
    BridgeJoined,
    CallerIdChanged,
    CallEvent,
    CallsJoined,
    ChannelAdded,
    ChannelCreated,
    ChannelHungUp,
    ChannelSnapshot,
    ChannelStateChanged,
    DialFinished,
    DialStarted,
    QueueAbandoned,
    QueueJoined,
    QueueLeft,
    UserEventReceived,
)

STATE_UP = 6
_PHONE = re.compile(r"\+?\d{7,15}")
_EXTENSION = re.compile(r"\d{2,6}")
# What a channel driver appends to the resource in a channel's name: `-0000001b` (PJSIP, SIP, Local,
# 8 hex digits), `-4097` (IAX2, its call number).
_CHANNEL_SUFFIX = re.compile(r"[0-9a-f]{8}")
_IAX2_SUFFIX = re.compile(r"\d{1,5}")
# An extension that names a number (a DID, an operator's phone), not a dialplan entry point like `s`.
_NUMBER = re.compile(r"\+?\d+")
# Q.850 causes that say the network or the number failed, not a person.
FAILURE_CAUSES = frozenset(
    {1, 2, 3, 20, 21, 22, 27, 28, 29, 34, 38, 41, 42, 44, 47, 50, 57, 58, 65, 66, 69, 79, 81, 88, 95}
    | set(range(96, 103))
    | {111, 127}
)
NO_ANSWER_CAUSES = frozenset({18, 19})
# Presses that mean "help" (the dialplan's Button field); another button is a service request.
SOS_BUTTONS = frozenset({"SOS", "RED", "EMERGENCY", ""})
# Ended linkedids remembered, so late or duplicated frames of a finished call do not reopen it.
REMEMBER_ENDED = 20_000


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class Disposition(StrEnum):
    ANSWERED = "answered"
    ABANDONED = "abandoned"
    FAILED = "failed"
    BUSY = "busy"
    NO_ANSWER = "no_answer"


_DIAL_STATUS = {
    "BUSY": Disposition.BUSY,
    "NOANSWER": Disposition.NO_ANSWER,
    "CONGESTION": Disposition.FAILED,
    "CHANUNAVAIL": Disposition.FAILED,
}


def phone_like(text: str | None) -> bool:
    return text is not None and _PHONE.fullmatch(text) is not None


def resource_of(channel: str) -> str:
    """What a channel or interface names: `PJSIP/8001-0000001a`, `Local/8001@operators-00000001;1`,
    `SIP/8001-00000abc`, `IAX2/8001-4097`, `PJSIP/8001` → `8001`. A DAHDI channel names its span or
    port (`DAHDI/i1/13800138000-1a`, `DAHDI/1-1`), never an extension."""
    technology, _, rest = channel.partition("/")
    if "@" in rest:
        return rest.split("@", 1)[0]
    rest = rest.split(";", 1)[0]
    head, sep, tail = rest.rpartition("-")
    suffix = _IAX2_SUFFIX if technology == "IAX2" else _CHANNEL_SUFFIX
    return head if sep and suffix.fullmatch(tail) else rest


def operator_extension(channel: str) -> str | None:
    """The extension of an operator's phone: 2-6 digits (a phone number is longer, a trunk is a name)."""
    resource = resource_of(channel)
    return resource if _EXTENSION.fullmatch(resource) else None


def _member_extension(interface: str, member: str) -> str | None:
    found = operator_extension(interface)
    if found is None and member:
        digits = member.split()[-1]
        found = digits if _EXTENSION.fullmatch(digits) else None
    return found


def _side(channel: str) -> str:
    """Both halves of a Local channel (`…;1`, `…;2`) are one side of the call."""
    return channel.rsplit(";", 1)[0]


def number_in(dial_string: str) -> str | None:
    found = _PHONE.search(dial_string)
    return found.group() if found else None


def _dialled(exten: str) -> str | None:
    """The number a channel was called on, when its extension is one (an analog line starts at `s`)."""
    return exten if _NUMBER.fullmatch(exten) else None


def _by_cause(cause: int) -> Disposition | None:
    """What a Q.850 cause says of an unanswered call, when it says something (16, 0: nothing)."""
    if cause == 17:
        return Disposition.BUSY
    if cause in NO_ANSWER_CAUSES:
        return Disposition.NO_ANSWER
    if cause in FAILURE_CAUSES:
        return Disposition.FAILED
    return None


@dataclass(frozen=True)
class CallRules:
    """What one Asterisk's dialplan means: which numbers are the hotline and the emergency line."""

    hotline_dids: frozenset[str]
    emergency_dids: frozenset[str]
    inbound_contexts: frozenset[str]

    def inbound(self, exten: str, context: str) -> bool:
        return exten in self.hotline_dids or exten in self.emergency_dids or context in self.inbound_contexts


@dataclass(frozen=True)
class ButtonPress:
    """UserEvent EmergencyButton from the dialplan: an in-home unit's SOS press, said on its call."""

    at: float
    linkedid: str | None
    device: str | None
    button: str
    phone: str | None


@dataclass(eq=False)
class Call:
    linkedid: str
    direction: Direction
    arrived_at: float
    root_channel: str = ""
    did: str | None = None
    emergency: bool = False
    caller: str | None = None
    called: str | None = None
    queue: str | None = None
    operator: str | None = None
    answered_at: float | None = None
    root_up_at: float | None = None
    ended_at: float | None = None
    hold_seconds: int | None = None
    agent_talk_seconds: int | None = None
    root_cause: int = 0
    first_cause: int = 0
    cause_known: bool = True
    dial_status: str | None = None
    abandoned: bool = False
    # the queue let go of the caller unanswered (its timeout, no member left to ring)
    queue_let_go: bool = False
    # a queue member took it (AgentConnect): Asterisk's hold time and member are the answer's
    agent_connected: bool = False
    # the operator who answered handed the caller on: the call goes on past their AgentComplete
    transferred: bool = False
    # answered while the link was down: `answered_at` is the re-sync's, until Asterisk says better
    answer_estimated: bool = False
    # it dialled a channel that is no operator's phone (a trunk): a call outside, whatever the number
    dialled_out: bool = False
    # enough is known to identify the far end and say the call is ringing
    ready: bool = False
    resynced: bool = False
    # the ActionID of the Originate that placed it, when Careline did
    attempt: str | None = None
    presses: list[ButtonPress] = field(default_factory=list)
    live: dict[str, int] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    bridges: dict[str, list[str]] = field(default_factory=dict)
    seq: int = 0
    # whatever the recorder keeps about the row (its id, what it has published)
    row: Any = None

    @property
    def sos_pressed(self) -> bool:
        # asked several times a call in every write, and almost every call has no press at all
        return bool(self.presses) and any(press.button in SOS_BUTTONS for press in self.presses)

    @property
    def root_is_operator(self) -> bool:
        """A call whose first channel is an operator's phone (a callback) answers twice."""
        return self.direction is Direction.OUTBOUND and operator_extension(self.root_channel) is not None

    @property
    def internal(self) -> bool:
        """Between operators' phones (a colleague rung, the consultation before a transfer): not a
        hotline call, so never written. A call Careline placed, or one that dialled out (a phone
        number, or 120 through the trunk), is not internal."""
        return (
            self.direction is Direction.OUTBOUND
            and self.attempt is None
            and not self.dialled_out
            and not phone_like(self.called)
            and self.root_is_operator
        )

    @property
    def far_number(self) -> str | None:
        """The number outside: who called in, or who was called."""
        return self.caller if self.direction is Direction.INBOUND else self.called

    @property
    def hangup_cause(self) -> int | None:
        if not self.cause_known and not (self.root_cause or self.first_cause):
            return None
        return self.root_cause or self.first_cause

    @property
    def disposition(self) -> Disposition | None:
        if self.ended_at is None:
            return None
        if self.answered_at is not None:
            return Disposition.ANSWERED
        if self.direction is Direction.INBOUND:
            if self.abandoned:
                return Disposition.ABANDONED
            if self.queue_let_go:
                return Disposition.NO_ANSWER
            return _by_cause(self.hangup_cause or 0) or Disposition.ABANDONED
        # The far end's cause first (the first channel to hang up is usually the one dialled out):
        # Dial reports a cause it has no word for (21 rejected, ...) as NOANSWER.
        found = _by_cause(self.first_cause) or _by_cause(self.root_cause)
        if found is None and self.dial_status in _DIAL_STATUS:
            found = _DIAL_STATUS[self.dial_status]
        return found or Disposition.NO_ANSWER

    @property
    def wait_seconds(self) -> int | None:
        if self.hold_seconds is not None:
            return max(0, self.hold_seconds)
        until = self.answered_at if self.answered_at is not None else self.ended_at
        return None if until is None else max(0, int(until - self.arrived_at))

    @property
    def talk_seconds(self) -> int | None:
        if self.answered_at is None:
            return None
        if self.agent_talk_seconds is not None:
            return max(0, self.agent_talk_seconds)
        return None if self.ended_at is None else max(0, int(self.ended_at - self.answered_at))


class CallTracker:
    """The calls of one Asterisk server; `changed` holds those touched since the recorder last took them."""

    def __init__(self, rules: CallRules) -> None:
        self.rules = rules
        self.calls: dict[str, Call] = {}
        self.changed: dict[str, Call] = {}
        # EmergencyButton presses that came on no call Careline knows
        self.presses: list[ButtonPress] = []
        self.orphans = 0
        self._ended: set[str] = set()
        self._ended_order: deque[str] = deque()
        # linkedid of a call folded into another by an attended transfer → the one it joined
        self._joined: dict[str, str] = {}
        self._seq = 0
        self._syncing = False
        self._sync_mark = 0
        self._parked: list[CallEvent] = []
        # calls read back from the database, waiting for the re-sync to say which channels they have
        self._adopted: dict[str, Call] = {}
        self._handlers: dict[type[Any], Callable[[Any], None]] = {
            ChannelCreated: self._created,
            ChannelAdded: self._added,
            CallerIdChanged: self._caller_id,
            ChannelStateChanged: self._state,
            DialStarted: self._dial_started,
            DialFinished: self._dial_finished,
            BridgeJoined: self._bridged,
            QueueJoined: self._queue_joined,
            QueueAbandoned: self._queue_abandoned,
            QueueLeft: self._queue_left,
            AgentConnected: self._agent_connected,
            AgentCompleted: self._agent_completed,
            ChannelHungUp: self._hung_up,
            CallsJoined: self._calls_joined,
            UserEventReceived: self._user_event,
        }

    # -- the recorder's side -----------------------------------------------------------------

    def take_changed(self) -> list[Call]:
        changed = list(self.changed.values())
        self.changed = {}
        return changed

    def take_presses(self) -> list[ButtonPress]:
        presses, self.presses = self.presses, []
        return presses

    def adopt(self, calls: Iterable[Call]) -> None:
        """Calls the database says are still open (after a restart), for the re-sync that follows to
        settle. A row knows none of its call's channels, so until the snapshot lists them the call's
        events wait with those of calls not known at all: its first Hangup is not its last."""
        for call in calls:
            if call.linkedid not in self.calls and call.linkedid not in self._ended:
                self._adopted[call.linkedid] = call

    def link_attempt(
        self, action_id: str, *, uniqueid: str | None, channel: str, success: bool = True
    ) -> Call | None:
        """Tie a call to the Originate that placed it: by the Uniqueid Asterisk reported, else by the
        channel it dialled (`Local/137…@outbound` is the start of `Local/137…@outbound-00000009;1`),
        the newest such call first. A failed Originate names no Uniqueid, and may have made no
        channel at all (Reason 0): the call found by name must have failed already (a Dial that did
        not answer, a channel gone), or it is another's on the same phone or number, still ringing."""
        call = self.calls.get(uniqueid) if uniqueid else None
        if call is None and channel:
            for candidate in reversed(self.calls.values()):
                if (
                    candidate.attempt is None
                    and candidate.root_channel.startswith(channel + "-")
                    and (success or candidate.dial_status is not None or bool(candidate.gone))
                ):
                    call = candidate
                    break
        if call is not None and call.attempt is None:
            call.attempt = action_id
            # Careline placed it: not a call between operators' phones after all
            call.ready = call.ready or call.answered_at is not None
            self._touch(call)
        return call

    # -- events ----------------------------------------------------------------------------

    def apply(self, event: CallEvent) -> None:
        self._seq += 1
        self._handlers[type(event)](event)

    def _touch(self, call: Call) -> None:
        call.seq = self._seq
        self.changed[call.linkedid] = call

    def _known(self, event: CallEvent, linkedid: str) -> Call | None:
        call = self.calls.get(linkedid)
        if call is None:
            joined = self._joined.get(linkedid)
            if joined is not None and joined in self.calls:
                return self.calls[joined]
            if self._syncing and linkedid not in self._ended:
                self._parked.append(event)
            else:
                self.orphans += 1
        return call

    def _created(self, ev: ChannelCreated) -> None:
        if ev.uniqueid != ev.linkedid:
            # not the call's first channel: counted, nothing more (the codec reads these lightly)
            self._added(ChannelAdded(ev.at, ev.linkedid, ev.uniqueid))
            return
        call = self.calls.get(ev.linkedid)
        if call is None:
            if ev.linkedid in self._ended:
                self.orphans += 1
                return
            call = self._open(ev)
        elif not call.root_channel:
            # known from a re-sync or the database before its first channel's frame came
            self._describe(call, ev)
        if ev.uniqueid in call.gone:
            return
        call.live[ev.uniqueid] = self._seq
        self._touch(call)

    def _open(self, ev: ChannelCreated) -> Call:
        call = Call(linkedid=ev.linkedid, direction=Direction.OUTBOUND, arrived_at=ev.at)
        self._describe(call, ev)
        self.calls[call.linkedid] = call
        return call

    def _describe(self, call: Call, ev: ChannelCreated) -> None:
        """Direction, DID and numbers, from the Newchannel of the root (or, until it comes, of another)."""
        inbound = self.rules.inbound(ev.exten, ev.context)
        call.direction = Direction.INBOUND if inbound else Direction.OUTBOUND
        call.root_channel = ev.channel if ev.uniqueid == ev.linkedid else ""
        call.did = _dialled(ev.exten) if inbound else None
        call.emergency = inbound and ev.exten in self.rules.emergency_dids
        call.caller = ev.caller or call.caller
        if inbound:
            call.called = call.did
        elif phone_like(ev.exten):
            call.called = ev.exten
        call.ready = call.ready or phone_like(call.far_number)

    def _added(self, ev: ChannelAdded) -> None:
        call = self._known(ev, ev.linkedid)
        if call is None or ev.uniqueid in call.gone:
            return
        call.live[ev.uniqueid] = self._seq
        self._touch(call)

    def _caller_id(self, ev: CallerIdChanged) -> None:
        call = self._known(ev, ev.linkedid)
        if call is None or ev.uniqueid != call.linkedid or ev.caller is None:
            return
        call.caller = ev.caller
        if call.direction is Direction.INBOUND:
            call.ready = True
        self._touch(call)

    def _state(self, ev: ChannelStateChanged) -> None:
        call = self._known(ev, ev.linkedid)
        if call is None or ev.uniqueid != call.linkedid or ev.state != STATE_UP:
            return
        self._root_up(call, ev.at)

    def _root_up(self, call: Call, at: float) -> None:
        if call.root_up_at is not None:
            return
        call.root_up_at = at
        if call.direction is Direction.INBOUND:
            call.ready = True
        elif call.root_is_operator:
            call.operator = call.operator or operator_extension(call.root_channel)
        else:
            # the first channel is the far end itself (a care call): it has answered
            self._answer(call, at, None)
        self._touch(call)

    def _dial_started(self, ev: DialStarted) -> None:
        call = self._known(ev, ev.linkedid)
        if call is None:
            return
        if call.direction is not Direction.OUTBOUND:
            return
        if not call.dialled_out and operator_extension(ev.dest_channel) is None:
            call.dialled_out = True
        if not phone_like(call.called):
            number = ev.dest_exten if phone_like(ev.dest_exten) else number_in(ev.dial_string)
            if number is not None:
                call.called = number
                call.ready = True
                self._touch(call)

    def _dial_finished(self, ev: DialFinished) -> None:
        call = self._known(ev, ev.linkedid)
        if call is None:
            return
        if ev.status == "ANSWER":
            if ev.dest_uniqueid == call.linkedid:
                self._root_up(call, ev.at)
            else:
                self._answer(call, ev.at, operator_extension(ev.dest_channel))
        else:
            call.dial_status = ev.status
        self._touch(call)

    def _bridged(self, ev: BridgeJoined) -> None:
        call = self._known(ev, ev.linkedid)
        if call is None:
            return
        members = call.bridges.setdefault(ev.bridge, [])
        members.append(ev.channel)
        if ev.members >= 2 and call.answered_at is None:
            self._answer(call, ev.at, self._operator_among(call, members))
        self._touch(call)

    def _operator_among(self, call: Call, channels: Iterable[str]) -> str | None:
        root_side = _side(call.root_channel) if call.root_channel else None
        for channel in channels:
            if _side(channel) != root_side:
                found = operator_extension(channel)
                if found is not None:
                    return found
        return None

    def _answer(self, call: Call, at: float, operator: str | None) -> None:
        if call.answered_at is None:
            operator_first = call.root_is_operator and call.root_up_at is not None
            call.answered_at = call.root_up_at if operator_first else at
            call.ready = call.ready or not call.internal
        elif call.answer_estimated and at < call.answered_at:
            # the answer itself, seen late (it waited for the re-sync's snapshot): better than the guess
            call.answered_at = max(at, call.arrived_at)
            call.answer_estimated = False
        if call.operator is None:
            if call.direction is Direction.INBOUND:
                call.operator = operator
            elif call.root_is_operator:
                call.operator = operator_extension(call.root_channel)

    def _queue_joined(self, ev: QueueJoined) -> None:
        call = self._known(ev, ev.linkedid)
        if call is None:
            return
        call.queue = ev.queue or call.queue
        call.ready = True
        self._touch(call)

    def _queue_abandoned(self, ev: QueueAbandoned) -> None:
        call = self._known(ev, ev.linkedid)
        if call is None:
            return
        call.queue = ev.queue or call.queue
        call.hold_seconds = ev.hold_seconds
        call.abandoned = True
        self._touch(call)

    def _queue_left(self, ev: QueueLeft) -> None:
        call = self._known(ev, ev.linkedid)
        if call is None:
            return
        # Also sent when a member took the call or the caller hung up: those say so themselves
        # (AgentConnect, DialEnd, QueueCallerAbandon) and come first in the disposition. Nothing
        # to write until the call ends.
        call.queue_let_go = True

    def _agent_connected(self, ev: AgentConnected) -> None:
        call = self._known(ev, ev.linkedid)
        if call is None:
            return
        operator = _member_extension(ev.interface, ev.member)
        self._answer(call, ev.at, operator)
        if not (call.agent_connected or call.transferred):
            # The queue's first answer: its hold time is the wait, and it says who took the call (a
            # Dial seen first may have named a Local channel's end). A member reached after a transfer
            # back into a queue answers no more than the transfer did.
            call.agent_connected = True
            call.queue = ev.queue or call.queue
            call.hold_seconds = ev.hold_seconds
            if operator is not None:
                call.operator = operator
        self._touch(call)

    def _agent_completed(self, ev: AgentCompleted) -> None:
        call = self._known(ev, ev.linkedid)
        if call is None:
            return
        if not call.transferred:
            if ev.transferred:
                # the member handed the caller on: their TalkTime ends where the call does not
                call.transferred = True
            else:
                call.agent_talk_seconds = ev.talk_seconds
                if call.answer_estimated and ev.talk_seconds is not None:
                    # answered while the link was down: Asterisk's talk time dates the answer
                    call.answered_at = max(call.arrived_at, ev.at - ev.talk_seconds)
                    call.answer_estimated = False
            if ev.hold_seconds is not None:
                call.hold_seconds = ev.hold_seconds
        self._touch(call)

    def _hung_up(self, ev: ChannelHungUp) -> None:
        call = self._known(ev, ev.linkedid)
        if call is None:
            return
        if ev.uniqueid == call.linkedid:
            call.root_cause = ev.cause
        if ev.cause and not call.first_cause:
            call.first_cause = ev.cause
        call.live.pop(ev.uniqueid, None)
        call.gone.add(ev.uniqueid)
        if not call.live:
            self._end(call, ev.at)
        self._touch(call)

    def _user_event(self, ev: UserEventReceived) -> None:
        if ev.name != "EmergencyButton":
            return
        press = ButtonPress(
            at=ev.at,
            linkedid=ev.linkedid,
            device=ev.fields.get("Device") or None,
            button=ev.fields.get("Button", "").strip().upper(),
            phone=ev.fields.get("Resident-Phone") or None,
        )
        call = self._call_of(ev.linkedid) if ev.linkedid else None
        if call is None:
            self.presses.append(press)
            return
        call.presses.append(press)
        call.ready = True
        self._touch(call)

    def _calls_joined(self, ev: CallsJoined) -> None:
        """An attended transfer: the consultation call is folded into the transferee's. Asterisk
        gives the channels that end up bridged together the older Linkedid, and leaves the others
        theirs, so the rest of the conversation comes under either: both now lead to one call."""
        if not ev.joined:
            return
        keep, fold = self._call_of(ev.linkedid), self._call_of(ev.other)
        if keep is None or fold is keep:
            return
        if fold is None:
            self._join(ev.other, keep)
            return
        if fold.ready and not keep.ready:
            # the transferee was the consultation (the operator had called a colleague first)
            keep, fold = fold, keep
        for uniqueid in fold.live:
            if uniqueid not in keep.gone:
                keep.live[uniqueid] = self._seq
        keep.gone |= fold.gone
        keep.transferred = True
        if fold.ready:
            # written as a call of its own (a consultation with a number outside): it ends here
            self._end(fold, ev.at)
            self._touch(fold)
        else:
            self._forget(fold.linkedid)
        self._join(fold.linkedid, keep)
        self._touch(keep)

    def _call_of(self, linkedid: str) -> Call | None:
        call = self.calls.get(linkedid)
        if call is None and linkedid in self._joined:
            call = self.calls.get(self._joined[linkedid])
        return call

    def _join(self, linkedid: str, call: Call) -> None:
        self._joined[linkedid] = call.linkedid
        if len(self._joined) > REMEMBER_ENDED:
            del self._joined[next(iter(self._joined))]

    def _end(self, call: Call, at: float) -> None:
        call.ended_at = max(at, call.arrived_at)
        call.ready = call.ready or not call.internal
        self._forget(call.linkedid)

    def _forget(self, linkedid: str) -> None:
        self.calls.pop(linkedid, None)
        self._ended.add(linkedid)
        self._ended_order.append(linkedid)
        if len(self._ended_order) > REMEMBER_ENDED:
            self._ended.discard(self._ended_order.popleft())

    # -- re-sync ----------------------------------------------------------------------------

    @property
    def syncing(self) -> bool:
        return self._syncing

    def begin_resync(self) -> None:
        """From now until `finish_resync`, events of calls we do not know wait for the snapshot.
        Once begun, calling it again changes nothing (the link begins it at the first event after a
        login, which can come before the re-sync is asked for)."""
        if self._syncing:
            return
        self._syncing = True
        self._sync_mark = self._seq

    def finish_resync(self, channels: Sequence[ChannelSnapshot], now: float) -> None:
        """Reconcile with every channel Asterisk has now; then replay the events that waited."""
        groups: dict[str, list[ChannelSnapshot]] = {}
        for snapshot in channels:
            groups.setdefault(snapshot.linkedid, []).append(snapshot)
        self._take_adopted()
        for linkedid, call in list(self.calls.items()):
            if linkedid not in groups and call.seq <= self._sync_mark:
                # it ended while the link was down: when, and why, nobody told us
                call.resynced = True
                call.cause_known = False
                self._end(call, now)
                self._touch(call)
        for linkedid, snapshots in groups.items():
            if linkedid in self._ended:
                continue
            call = self.calls.get(linkedid) or self._open_from(snapshots, now)
            present = {s.uniqueid for s in snapshots}
            for uniqueid, seen in list(call.live.items()):
                if seen <= self._sync_mark and uniqueid not in present:
                    del call.live[uniqueid]
                    call.gone.add(uniqueid)
            for snapshot in snapshots:
                if snapshot.uniqueid not in call.gone:
                    call.live.setdefault(snapshot.uniqueid, self._seq)
            self._settle(call, snapshots, now)
            self._touch(call)
        self._end_resync()

    def abort_resync(self) -> None:
        """The snapshot could not be had: carry on with what the events say."""
        self._take_adopted()
        self._end_resync()

    def _take_adopted(self) -> None:
        adopted, self._adopted = self._adopted, {}
        for linkedid, call in adopted.items():
            if linkedid not in self.calls and linkedid not in self._ended:
                self.calls[linkedid] = call

    def _end_resync(self) -> None:
        self._syncing = False
        parked, self._parked = self._parked, []
        for event in parked:
            self.apply(event)

    def _open_from(self, snapshots: Sequence[ChannelSnapshot], now: float) -> Call:
        root = next((s for s in snapshots if s.uniqueid == s.linkedid), None)
        inbound_at = next((s for s in snapshots if self.rules.inbound(s.exten, s.context)), None)
        direction = Direction.INBOUND if inbound_at is not None else Direction.OUTBOUND
        did = None
        if inbound_at is not None:
            dids = self.rules.hotline_dids | self.rules.emergency_dids
            did = next((s.exten for s in snapshots if s.exten in dids), _dialled(inbound_at.exten))
        call = Call(
            linkedid=snapshots[0].linkedid,
            direction=direction,
            arrived_at=now - max(s.duration_seconds for s in snapshots),
            root_channel=root.channel if root else "",
            did=did,
            emergency=did in self.rules.emergency_dids if did else False,
            caller=(root or snapshots[0]).caller,
            called=did if did else next((s.exten for s in snapshots if phone_like(s.exten)), None),
            ready=True,
            resynced=True,
        )
        self.calls[call.linkedid] = call
        return call

    def _settle(self, call: Call, snapshots: Sequence[ChannelSnapshot], now: float) -> None:
        for snapshot in snapshots:
            if snapshot.application == "Queue" and snapshot.application_data:
                call.queue = snapshot.application_data.split(",", 1)[0]
            if snapshot.uniqueid == call.linkedid:
                # a call read back from the database after a restart knows no channel
                call.root_channel = call.root_channel or snapshot.channel
                call.caller = call.caller or snapshot.caller
                if snapshot.state == STATE_UP and call.root_up_at is None and call.root_is_operator:
                    call.root_up_at = now
        if call.answered_at is not None:
            return
        bridges: dict[str, list[str]] = {}
        for snapshot in snapshots:
            if snapshot.bridge:
                bridges.setdefault(snapshot.bridge, []).append(snapshot.channel)
        for members in bridges.values():
            if len(members) >= 2:
                # Answered while we were away: the re-sync is the earliest time we can vouch for,
                # until the answer's own event (one that waited for the snapshot) or Asterisk's talk
                # time (AgentComplete) dates it.
                call.resynced = True
                self._answer(call, now, self._operator_among(call, members))
                call.answer_estimated = True
                return
