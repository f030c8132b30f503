"""A stand-in Asterisk: `careline simulate pbx`, and the AMI peer of the tests and benchmarks.

`AmiPeer` listens as Asterisk's manager does (banner, Login, ActionIDs echoed,
event lists ending in `…Complete`) and plays a script to whoever logs in:

- recordings (`NAME.ami` / `.sent` / `.timing`, see shared/fixtures/ami) replayed at
  their pace or all at once, the recorded client's ActionIDs replaced by the
  client's own: an Originate recorded mid-stream waits for the client's Originate;
- synthetic calls, shaped like the recordings (noise included), from given numbers;
- a dropped connection at any point, with what "happened at Asterisk" meanwhile.

It keeps the live channels of what it has sent, so a client's CoreShowChannels
(the re-sync after a reconnect) is answered as Asterisk would. It is never
started by `careline serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dispatch.tasks import cancel_and_wait

log = logging.getLogger(__name__)

BANNER = "Asterisk Call Manager/9.0.0"
EOL = b"\r\n"
END = b"\r\n\r\n"
# Actions whose answer sits inside a recorded call's events: a replay waits for the client to send one.
AWAITED_ACTIONS = frozenset({"Originate"})


def frame_headers(frame: bytes) -> dict[str, str]:
    """Every `Key: value` of a frame (the first of a repeated key)."""
    headers: dict[str, str] = {}
    for line in frame.decode("utf-8", "replace").split("\r\n"):
        key, sep, value = line.partition(":")
        if sep and key not in headers:
            headers[key] = value[1:] if value.startswith(" ") else value
    return headers


def render(fields: Iterable[tuple[str, str]]) -> bytes:
    return "".join(f"{key}: {value}\r\n" for key, value in fields).encode() + EOL


def stamp(frame: bytes, at: float) -> bytes:
    """The frame as Asterisk sends it with `timestampevents = yes`: Timestamp after Privilege."""
    if not frame.startswith(b"Event: ") or b"\r\nTimestamp: " in frame:
        return frame
    lines = frame.split(EOL)
    where = 2 if len(lines) > 1 and lines[1].startswith(b"Privilege: ") else 1
    lines.insert(where, f"Timestamp: {at:.6f}".encode())
    return EOL.join(lines)


# -- recordings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    """One recorded manager session: every frame Asterisk sent, when, and what the client sent."""

    name: str
    banner: str
    frames: tuple[bytes, ...]
    times: tuple[float, ...]
    actions: tuple[dict[str, str], ...]

    @classmethod
    def load(cls, path: Path) -> Recording:
        """`path` without extension: reads PATH.ami, PATH.sent and PATH.timing."""
        data = path.with_suffix(".ami").read_bytes()
        offsets: list[tuple[int, float]] = []
        for line in path.with_suffix(".timing").read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                offset, seconds = line.split()
                offsets.append((int(offset), float(seconds)))
        sent = path.with_suffix(".sent").read_bytes()
        actions = tuple(frame_headers(f) for f in sent.split(END) if f.strip())
        banner_end = data.index(EOL)
        frames: list[bytes] = []
        times: list[float] = []
        position = banner_end + 2
        for frame in data[position:].split(END):
            if frame.strip():
                times.append(_time_at(offsets, position))
                frames.append(frame)
            position += len(frame) + 4
        return cls(path.name, data[:banner_end].decode(), tuple(frames), tuple(times), actions)

    @property
    def connected_epoch(self) -> float:
        """When the recording's session began (from SuccessfulAuth's EventTV), else a fixed moment."""
        for frame, seconds in zip(self.frames, self.times, strict=True):
            if frame.startswith(b"Event: SuccessfulAuth"):
                tv = frame_headers(frame).get("EventTV", "")
                with contextlib.suppress(ValueError):
                    return dt.datetime.strptime(tv, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() - seconds
        return 1_795_393_700.0


def _time_at(offsets: Sequence[tuple[int, float]], position: int) -> float:
    seconds = 0.0
    for offset, at in offsets:
        if offset > position:
            break
        seconds = at
    return seconds


# -- scripts ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Frames to send; `offsets` (seconds from the script's start) pace them when the peer has a speed."""

    frames: tuple[bytes, ...]
    offsets: tuple[float, ...] = ()


@dataclass(frozen=True)
class Raw:
    """Bytes sent as they are (a benchmark's prepared stream, or garbage)."""

    data: bytes


@dataclass(frozen=True)
class AwaitAction:
    """Wait until the client has sent this action in this session. With `recorded_id` the script
    answers it (the recording's answer follows), and `recorded_id` reads as the client's ActionID
    from then on; without, the peer answers it as usual (a test waiting for the re-sync)."""

    action: str
    recorded_id: str | None = None


@dataclass(frozen=True)
class Drop:
    """Drop the connection here. `unseen` frames happen at Asterisk while the client is away."""

    unseen: tuple[bytes, ...] = ()


Step = Send | Raw | AwaitAction | Drop


@dataclass
class Script:
    steps: list[Step] = field(default_factory=list)
    # action name → the recorded answer (response and its events), served when a client asks
    answers: dict[str, list[bytes]] = field(default_factory=dict)


def replay(recording: Recording, *, stamped: bool = False, frames: Sequence[bytes] | None = None) -> Script:
    """The script that plays `recording` to a client that logged in (its own Login is answered live).

    `stamped` adds Asterisk's Timestamp header from the recording's timing, as a manager with
    `timestampevents = yes` would send. `frames` replaces the recording's frames (a variation),
    keeping the timing of those that are unchanged.
    """
    by_id = {a.get("ActionID", ""): a for a in recording.actions}
    timing = dict(zip(recording.frames, recording.times, strict=True))
    base = recording.connected_epoch
    script = Script()
    current: list[bytes] = []
    offsets: list[float] = []
    last = 0.0

    def flush() -> None:
        if current:
            script.steps.append(Send(tuple(current), tuple(offsets)))
            current.clear()
            offsets.clear()

    for frame in recording.frames if frames is None else frames:
        last = timing.get(frame, last)
        headers = frame_headers(frame)
        action = by_id.get(headers.get("ActionID", ""))
        if action is not None:
            name = action.get("Action", "")
            if name == "Login":
                continue
            if name not in AWAITED_ACTIONS:
                script.answers.setdefault(name, []).append(frame)
                continue
            if frame.startswith(b"Response:"):  # not OriginateResponse, an event that also says Response
                flush()
                script.steps.append(AwaitAction(name, headers["ActionID"]))
        current.append(stamp(frame, base + last) if stamped else frame)
        offsets.append(last)
    flush()
    return script


# -- what the PBX has live (for CoreShowChannels) -----------------------------------------------------

_CHANNEL_FIELDS = (
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
)


class Channels:
    """Live channels, kept from the frames the peer sends."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.live: dict[str, dict[str, str]] = {}
        self.created: dict[str, float] = {}

    def apply(self, frame: bytes) -> None:
        if not frame.startswith(b"Event: "):
            return
        event = frame[7 : frame.find(EOL, 7) if EOL in frame else len(frame)]
        if event not in _TRACKED:
            return
        headers = frame_headers(frame)
        uniqueid = headers.get("Uniqueid", "")
        if event == b"Newchannel":
            self.live[uniqueid] = {k: headers.get(k, "") for k in _CHANNEL_FIELDS} | {
                "BridgeId": "",
                "Application": "",
                "ApplicationData": "",
            }
            self.created[uniqueid] = self.clock()
            return
        channel = self.live.get(uniqueid)
        if channel is None:
            return
        if event == b"Hangup":
            del self.live[uniqueid]
            self.created.pop(uniqueid, None)
        elif event == b"BridgeEnter":
            channel["BridgeId"] = headers.get("BridgeUniqueid", "")
        elif event == b"BridgeLeave":
            channel["BridgeId"] = ""
        elif event == b"Newexten":
            channel["Application"] = headers.get("Application", "")
            channel["ApplicationData"] = headers.get("AppData", "")
            channel.update({k: headers[k] for k in ("Context", "Exten", "Priority") if k in headers})
        else:
            channel.update({k: headers[k] for k in _CHANNEL_FIELDS if k in headers and k != "Uniqueid"})

    def snapshot(self, action_id: str) -> list[bytes]:
        now = self.clock()
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
        for uniqueid, channel in self.live.items():
            seconds = int(max(0.0, now - self.created.get(uniqueid, now)))
            duration = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
            frames.append(
                render(
                    [
                        ("Event", "CoreShowChannel"),
                        ("ActionID", action_id),
                        *channel.items(),
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
                    ("ListItems", str(len(self.live))),
                ]
            )
        )
        return [f[: -len(EOL)] for f in frames]


_TRACKED = frozenset(
    {
        b"Newchannel",
        b"Newstate",
        b"NewCallerid",
        b"NewConnectedLine",
        b"Newexten",
        b"BridgeEnter",
        b"BridgeLeave",
        b"Hangup",
    }
)


# -- the peer -------------------------------------------------------------------------------------------

OriginatePolicy = Callable[[dict[str, str]], list[bytes]]


def queue_originate(action: dict[str, str]) -> list[bytes]:
    """Accept and say nothing more (what a test that drives the rest by hand wants)."""
    return [_response(action, "Success", "Originate successfully queued")]


def silent_originate(action: dict[str, str]) -> list[bytes]:
    """Never answer: an Asterisk that lost the action."""
    return []


def _response(action: dict[str, str], response: str, message: str) -> bytes:
    return render([("Response", response), ("ActionID", action.get("ActionID", "")), ("Message", message)])[
        : -len(EOL)
    ]


@dataclass(frozen=True)
class QueueMember:
    name: str
    interface: str


class AmiPeer:
    """An AMI server for one script at a time, shared by the connections that come and go."""

    def __init__(
        self,
        *,
        username: str = "careline",
        secret: str = "careline",
        banner: str = BANNER,
        speed: float | None = None,
        track_channels: bool = True,
        queue: str = "hotline",
        members: Sequence[QueueMember] = (
            QueueMember("Wang Fang 8001", "Local/8001@operators"),
            QueueMember("Li Wei 8002", "Local/8002@operators"),
        ),
        originate: OriginatePolicy = queue_originate,
        every_login: Sequence[Step] = (),
    ) -> None:
        self.username = username
        self.secret = secret
        self.banner = banner
        self.speed = speed
        self.track_channels = track_channels
        self.queue = queue
        self.members = tuple(members)
        self.originate = originate
        # played to each client after it logs in, before the shared script (a benchmark's stream)
        self.every_login = tuple(every_login)
        # actions read and never answered (an Asterisk that stopped answering Pings)
        self.mute: set[str] = set()
        self.channels = Channels()
        self.answers: dict[str, list[bytes]] = {}
        self.received: list[dict[str, str]] = []
        self.logins = 0
        self.refused_logins = 0
        self.connections = 0
        self.sent_frames = 0
        self._steps: deque[Step] = deque()
        self._tick = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._sessions: set[_Session] = set()

    # -- what the test (or the simulator) does ---------------------------------------------------

    def play(self, script: Script) -> None:
        self._steps.extend(script.steps)
        self.answers.update(script.answers)
        self._notify()

    def send(self, *steps: Step) -> None:
        self._steps.extend(steps)
        self._notify()

    def offline(self, frames: Iterable[bytes]) -> None:
        """Things that happen at Asterisk while no client is connected (seen only by a re-sync)."""
        for frame in frames:
            self.channels.apply(frame)

    @property
    def idle(self) -> bool:
        """Every step played (to a logged-in client)."""
        return not self._steps and all(not s.busy for s in self._sessions)

    async def wait(self, condition: Callable[[], bool]) -> None:
        """Until `condition()` holds (checked again whenever the peer does something)."""
        while True:
            tick = self._tick
            if condition():
                return
            await tick.wait()

    def _notify(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()

    def holds(self, action: str) -> bool:
        """Whether the script still waits for the client to send `action`."""
        return any(
            isinstance(step, AwaitAction) and step.action == action and step.recorded_id
            for step in self._steps
        )

    # -- server ----------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, host, port)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions):
            await session.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def drop_all(self) -> None:
        """Cut every connection now (Asterisk restarting, a cable pulled)."""
        for session in self._sessions:
            session.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(self, reader, writer)
        self._sessions.add(session)
        self.connections += 1
        self._notify()
        try:
            await session.run()
        finally:
            self._sessions.discard(session)
            self._notify()

    def _next_step(self) -> Step | None:
        return self._steps.popleft() if self._steps else None


class _Session:
    def __init__(self, peer: AmiPeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peer = peer
        self.reader = reader
        self.writer = writer
        self.ids: dict[bytes, bytes] = {}
        # ActionIDs of the client's actions that the script answers (an Originate recorded mid-call)
        self.held: dict[str, deque[str]] = {}
        self.seen: set[str] = set()
        self.awaiting: str | None = None
        self.busy = False
        self._player: asyncio.Task[None] | None = None
        self._action = asyncio.Event()

    def abort(self) -> None:
        self.writer.transport.abort()

    async def close(self) -> None:
        self.abort()
        if self._player is not None:
            await cancel_and_wait(self._player)

    async def run(self) -> None:
        self.writer.write(self.peer.banner.encode() + EOL)
        buffer = b""
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    return
                buffer += data
                *frames, buffer = buffer.split(END)
                for frame in frames:
                    if frame.strip():
                        await self._handle(frame_headers(frame))
        except (ConnectionError, OSError):
            return
        finally:
            self.abort()
            if self._player is not None:
                await cancel_and_wait(self._player)

    def _write(self, frames: Iterable[bytes]) -> None:
        if self.writer.transport.is_closing():
            return
        out = []
        for frame in frames:
            for recorded, mine in self.ids.items():
                if recorded in frame:
                    frame = frame.replace(recorded, mine)
            out.append(frame + END)
        self.writer.write(b"".join(out))

    async def _handle(self, action: dict[str, str]) -> None:
        peer = self.peer
        peer.received.append(action)
        name = action.get("Action", "")
        action_id = action.get("ActionID", "")
        self.seen.add(name)
        self._action.set()
        peer._notify()
        if name in peer.mute:
            return
        if name == self.awaiting or peer.holds(name):
            # the script answers it, from the recording, when it gets there
            self.held.setdefault(name, deque()).append(action_id)
            self._action.set()
            return
        if name == "Login":
            if action.get("Username") == peer.username and action.get("Secret") == peer.secret:
                peer.logins += 1
                self._write([_response(action, "Success", "Authentication accepted")])
                if self._player is None:
                    self._player = asyncio.create_task(self._play(), name="ami-peer-player")
            else:
                peer.refused_logins += 1
                self._write([_response(action, "Error", "Authentication failed")])
        elif name == "Ping":
            self._write(
                [
                    render(
                        [
                            ("Response", "Success"),
                            ("ActionID", action_id),
                            ("Ping", "Pong"),
                            ("Timestamp", f"{time.time():.6f}"),
                        ]
                    )[:-2]
                ]
            )
        elif name == "CoreShowChannels":
            self._write(peer.channels.snapshot(action_id))
        elif name == "Logoff":
            self._write(
                [
                    render(
                        [
                            ("Response", "Goodbye"),
                            ("ActionID", action_id),
                            ("Message", "Thanks for all the fish."),
                        ]
                    )[:-2]
                ]
            )
            await self.writer.drain()
            self.abort()
        elif name == "Originate":
            self._write(peer.originate(action))
        elif name in peer.answers:
            self._write(_answer_as(peer.answers[name], action_id))
        elif name == "QueueStatus":
            self._write(self._queue_status(action_id))
        else:
            self._write([_response(action, "Error", f"Invalid/unknown command: {name}")])

    def _queue_status(self, action_id: str) -> list[bytes]:
        peer = self.peer
        frames = [_response({"ActionID": action_id}, "Success", "Queue status will follow")]
        for member in peer.members:
            frames.append(
                render(
                    [
                        ("Event", "QueueMember"),
                        ("Queue", peer.queue),
                        ("Name", member.name),
                        ("Location", member.interface),
                        ("StateInterface", member.interface),
                        ("Membership", "static"),
                        ("Status", "1"),
                        ("Paused", "0"),
                        ("ActionID", action_id),
                    ]
                )[:-2]
            )
        frames.append(
            render(
                [
                    ("Event", "QueueStatusComplete"),
                    ("ActionID", action_id),
                    ("EventList", "Complete"),
                    ("ListItems", str(len(peer.members))),
                ]
            )[:-2]
        )
        return frames

    async def _play(self) -> None:
        try:
            await self._steps()
        except (ConnectionError, OSError):
            # the client went away mid-step: what is left waits for the next session
            self.busy = False
            self.peer._notify()

    async def _steps(self) -> None:
        peer = self.peer
        own = deque(peer.every_login)
        while True:
            step = own.popleft() if own else peer._next_step()
            if step is None:
                self.busy = False
                peer._notify()
                await peer.wait(lambda: bool(peer._steps))
                continue
            self.busy = True
            match step:
                case Send():
                    await self._send(step)
                case Raw():
                    if not self.writer.transport.is_closing():
                        self.writer.write(step.data)
                    await self.writer.drain()
                case AwaitAction():
                    await self._await(step)
                case Drop():
                    for frame in step.unseen:
                        peer.channels.apply(frame)
                    self.busy = False
                    self.abort()
                    peer._notify()
                    return
            peer._notify()

    async def _send(self, step: Send) -> None:
        peer = self.peer
        speed = peer.speed
        started = time.monotonic()
        for index, frame in enumerate(step.frames):
            if speed and step.offsets:
                delay = started + (step.offsets[index] - step.offsets[0]) / speed - time.monotonic()
                if delay > 0:
                    await self.writer.drain()
                    await asyncio.sleep(delay)
            if peer.track_channels:
                peer.channels.apply(frame)
            self._write([frame])
            peer.sent_frames += 1
        await self.writer.drain()

    async def _await(self, step: AwaitAction) -> None:
        if not step.recorded_id:
            while step.action not in self.seen:
                self._action.clear()
                await self._action.wait()
            return
        self.awaiting = step.action
        try:
            while not self.held.get(step.action):
                self._action.clear()
                await self._action.wait()
            client_id = self.held[step.action].popleft()
        finally:
            self.awaiting = None
        if step.recorded_id:
            self.ids[step.recorded_id.encode()] = client_id.encode()


def _answer_as(frames: Sequence[bytes], action_id: str) -> list[bytes]:
    out = []
    for frame in frames:
        headers = frame_headers(frame)
        recorded = headers.get("ActionID", "")
        out.append(frame.replace(f"ActionID: {recorded}".encode(), f"ActionID: {action_id}".encode()))
    return out


# -- `careline simulate pbx` ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PbxOptions:
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "careline"
    secret: str = "careline"
    # recordings (paths without .ami) to play; none: made-up calls from `numbers`
    recordings: tuple[Path, ...] = ()
    # made-up calls to play (0: for ever), and how many start a minute
    calls: int = 0
    rate_per_minute: float = 6.0
    # 1: the recorded pace; 10: ten times faster; None: all at once
    speed: float | None = 1.0


async def run_pbx(options: PbxOptions, numbers: Sequence[str], *, say: Callable[[str], None] = print) -> None:
    """Listen as an Asterisk manager and play calls to whoever logs in, until cancelled."""
    from telephony.sim_calls import CallFactory, generated_script

    peer = AmiPeer(username=options.username, secret=options.secret, speed=options.speed)
    await peer.start(options.host, options.port)
    say(f"listening as Asterisk's manager on {options.host}:{peer.port} (user {options.username})")
    try:
        if options.recordings:
            for path in options.recordings:
                peer.play(replay(Recording.load(path)))
                say(f"queued the recording {path.name}")
            await asyncio.Event().wait()
        played = 0
        batch = 50
        factory = CallFactory()
        while options.calls == 0 or played < options.calls:
            count = batch if options.calls == 0 else min(batch, options.calls - played)
            peer.play(
                generated_script(
                    numbers,
                    calls=count,
                    rate_per_minute=options.rate_per_minute,
                    seed=played,
                    factory=factory,
                )
            )
            await peer.wait(lambda: peer.idle and peer.logins > 0)
            played += count
            say(f"{played} calls played")
        await asyncio.Event().wait()
    finally:
        await peer.stop()
