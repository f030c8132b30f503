"""Made-up calls shaped like the recorded ones: the same events in the same order, the same noise
(VarSet, Newexten, DeviceStateChange), Local channels as in the recordings' dialplan. The
simulator plays them to show a newcomer calls arriving; the benchmarks load the service with them.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Sequence

from dispatch.database import Conn
from dispatch.phones import PhoneBook
from telephony.simulator import Script, Send, render


class CallFactory:
    """Calls shaped like the recordings (the same events, the same noise), for the simulator and
    the benchmarks: `inbound(...)` gives (seconds from the call's start, frame) pairs."""

    def __init__(self, *, did: str = "12349", queue: str = "hotline", epoch: int | None = None) -> None:
        self.did = did
        self.queue = queue
        self.epoch = epoch if epoch is not None else int(time.time())
        self._uniqueids = itertools.count()
        self._channels = itertools.count(1)

    def _uniqueid(self) -> str:
        return f"{self.epoch}.{next(self._uniqueids)}"

    def _local(self, exten: str, context: str) -> tuple[str, str]:
        suffix = f"{next(self._channels):08x}"
        return f"Local/{exten}@{context}-{suffix};1", f"Local/{exten}@{context}-{suffix};2"

    def inbound(
        self,
        caller: str,
        *,
        did: str | None = None,
        answered_by: str | None = "8001",
        ring_seconds: float = 3.0,
        talk_seconds: float = 16.0,
        button: str | None = None,
    ) -> list[tuple[float, bytes]]:
        """A call into the queue: answered by `answered_by` (an extension), or abandoned when None."""
        did = did or self.did
        frames: list[tuple[float, bytes]] = []
        root_uid, twin_uid = self._uniqueid(), self._uniqueid()
        root, twin = self._local(did, "from-resident")
        channels: dict[str, dict[str, str]] = {}

        def channel(uid: str, name: str, state: int, exten: str, context: str) -> None:
            channels[uid] = {
                "Channel": name,
                "ChannelState": str(state),
                "ChannelStateDesc": _STATE_DESC[state],
                "CallerIDNum": "<unknown>",
                "CallerIDName": "<unknown>",
                "ConnectedLineNum": "<unknown>",
                "ConnectedLineName": "<unknown>",
                "Language": "en",
                "AccountCode": "",
                "Context": context,
                "Exten": exten,
                "Priority": "1",
                "Uniqueid": uid,
                "Linkedid": root_uid,
            }

        def event(
            at: float,
            name: str,
            uid: str | None = None,
            extra: Sequence[tuple[str, str]] = (),
            lead: Sequence[tuple[str, str]] = (),
        ) -> None:
            # `lead`: what Asterisk writes before the channel's fields (a bridge's, for BridgeEnter)
            fields: list[tuple[str, str]] = [("Event", name), ("Privilege", "call,all"), *lead]
            if uid is not None:
                fields += list(channels[uid].items())
            frames.append((at, render([*fields, *extra])[:-2]))

        def noise(at: float, uid: str, count: int) -> None:
            for n in range(count):
                event(at, "VarSet", uid, [("Variable", f"QUEUEVAR{n}"), ("Value", str(n))])
            event(at, "Newexten", uid, [("Extension", did), ("Application", "NoOp"), ("AppData", "")])
            frames.append(
                (
                    at,
                    render(
                        [
                            ("Event", "DeviceStateChange"),
                            ("Privilege", "call,all"),
                            ("Device", "Local/8001@operators"),
                            ("State", "INUSE"),
                        ]
                    )[:-2],
                )
            )

        channel(root_uid, root, 0, did, "from-resident")
        channel(twin_uid, twin, 4, did, "from-resident")
        event(0.0, "Newchannel", root_uid)
        event(0.0, "Newchannel", twin_uid)
        noise(0.0, root_uid, 6)
        for uid in (root_uid, twin_uid):
            channels[uid].update(CallerIDNum=caller, CallerIDName=caller)
            event(0.0, "NewCallerid", uid, [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])
        for uid in (twin_uid, root_uid):
            channels[uid].update(ChannelState="6", ChannelStateDesc="Up")
            event(0.0, "Newstate", uid)
        noise(0.0, twin_uid, 10)
        if button is not None:
            event(
                0.5,
                "UserEvent",
                twin_uid,
                [
                    ("UserEvent", "EmergencyButton"),
                    ("Device", button),
                    ("Button", "SOS"),
                    ("Resident-Phone", caller),
                ],
            )
        event(0.5, "QueueCallerJoin", twin_uid, [("Queue", self.queue), ("Position", "1"), ("Count", "1")])
        operator = answered_by or "8001"
        op_uid, op_twin_uid = self._uniqueid(), self._uniqueid()
        op, op_twin = self._local(operator, "operators")
        channel(op_uid, op, 0, operator, "operators")
        channel(op_twin_uid, op_twin, 4, operator, "operators")
        event(0.5, "Newchannel", op_uid)
        event(0.5, "Newchannel", op_twin_uid)
        noise(0.5, op_uid, 20)
        dest = [(f"Dest{k}", v) for k, v in channels[op_uid].items()]
        event(0.5, "DialBegin", twin_uid, [*dest, ("DialString", f"Local/{operator}@operators")])
        noise(0.5, op_twin_uid, 10)
        answered_at = 0.5 + ring_seconds
        if answered_by is not None:
            for uid in (op_twin_uid, op_uid):
                channels[uid].update(ChannelState="6", ChannelStateDesc="Up")
                event(answered_at, "Newstate", uid)
            member = [
                ("Queue", self.queue),
                ("Interface", f"Local/{operator}@operators"),
                ("MemberName", f"Operator {operator}"),
            ]
            # as Asterisk does: the caller leaves the queue, then the member is connected
            event(
                answered_at,
                "QueueCallerLeave",
                twin_uid,
                [("Queue", self.queue), ("Position", "1"), ("Count", "0")],
            )
            event(
                answered_at,
                "AgentConnect",
                twin_uid,
                [*member, ("HoldTime", str(int(ring_seconds))), ("RingTime", str(int(ring_seconds)))],
            )
            bridge = f"bridge-{root_uid}"
            for count, uid in enumerate((op_uid, twin_uid), start=1):
                event(
                    answered_at,
                    "BridgeEnter",
                    uid,
                    lead=[("BridgeUniqueid", bridge), ("BridgeNumChannels", str(count))],
                )
            noise(answered_at, op_uid, 20)
            ended = answered_at + talk_seconds
            event(
                ended,
                "AgentComplete",
                twin_uid,
                [
                    *member,
                    ("HoldTime", str(int(ring_seconds))),
                    ("TalkTime", str(int(talk_seconds))),
                    ("Reason", "caller"),
                ],
            )
        else:
            ended = answered_at
            event(
                ended,
                "QueueCallerAbandon",
                twin_uid,
                [
                    ("Queue", self.queue),
                    ("Position", "1"),
                    ("OriginalPosition", "1"),
                    ("HoldTime", str(int(ring_seconds))),
                ],
            )
            event(
                ended,
                "QueueCallerLeave",
                twin_uid,
                [("Queue", self.queue), ("Position", "1"), ("Count", "0")],
            )
        noise(ended, twin_uid, 8)
        for uid in (root_uid, op_twin_uid, op_uid, twin_uid):
            event(
                ended,
                "Hangup",
                uid,
                [
                    ("Cause", "16" if answered_by or uid == root_uid else "0"),
                    ("Cause-txt", "Normal Clearing"),
                ],
            )
        return frames


_STATE_DESC = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up"}


def interleave(
    calls: Sequence[list[tuple[float, bytes]]], starts: Sequence[float]
) -> list[tuple[float, bytes]]:
    """Calls started at `starts` (seconds), merged into one stream in time order."""
    merged = [
        (start + at, index, frame)
        for index, (call, start) in enumerate(zip(calls, starts, strict=True))
        for at, frame in call
    ]
    merged.sort(key=lambda item: (item[0], item[1]))
    return [(at, frame) for at, _, frame in merged]


def generated_script(
    numbers: Sequence[str],
    *,
    calls: int,
    rate_per_minute: float,
    seed: int = 12349,
    emergency_share: float = 0.05,
    factory: CallFactory | None = None,
) -> Script:
    """`calls` made-up calls from `numbers`, `rate_per_minute` of them starting a minute (at the peer's
    speed). Pass the same `factory` to every batch so that Uniqueids never repeat."""
    rng = random.Random(seed)
    factory = factory or CallFactory()
    built = []
    starts = []
    for n in range(calls):
        number = rng.choice(numbers)
        emergency = rng.random() < emergency_share
        answered = None if rng.random() < 0.15 else rng.choice(("8001", "8002"))
        built.append(
            factory.inbound(
                number,
                did="123491" if emergency else "12349",
                answered_by=answered,
                ring_seconds=rng.uniform(2, 20),
                talk_seconds=rng.uniform(20, 240),
            )
        )
        starts.append(n * 60.0 / rate_per_minute)
    stream = interleave(built, starts)
    return Script([Send(tuple(f for _, f in stream), tuple(at for at, _ in stream))])


# Numbers to call from when there is no demo floor to take residents' phones from.
SAMPLE_NUMBERS = ("13800138000", "04716912345", "13900139000", "15847100001", "04716543210")


async def demo_numbers(conn: Conn, book: PhoneBook, limit: int) -> list[str]:
    """Residents' phones as a trunk delivers them (13800138000, 04716912345), so calls are identified."""
    rows = await conn.fetch("SELECT e164 FROM resident_phones ORDER BY resident_id, position LIMIT $1", limit)
    return ["".join(ch for ch in book.national(r["e164"]) if ch.isdigit()) for r in rows]
