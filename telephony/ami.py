"""One AMI connection to one Asterisk: log in, re-sync, keep alive, come back after an outage.

Why not panoramisk's `Manager`: it reconnects with `loop.call_later`, runs event
callbacks through `ensure_future` that nobody holds, retries a refused login every
two seconds for ever and has no step between login and events where a re-sync
could run. Careline keeps panoramisk's codec (see ami_codec.py) and owns the
connection here: one task per link, cancelled on stop, with

- login, and a refused secret reported as such and retried only every
  `auth_retry_seconds` (with jitter), never in a tight loop;
- after every (re)connect, the listener's `on_login` (the re-sync: CoreShowChannels)
  before the link calls itself up;
- a Ping every `ping_interval_seconds`; no answer in `ping_timeout_seconds` and the
  connection is dropped and made again;
- reconnects after a capped, jittered exponential backoff;
- nothing the server sends can end the task: the codec skips what it cannot read,
  and a listener that raises is logged and carried on from.

Every wait goes through the injected `sleep(seconds, why)`, so tests move time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from dispatch.config import AsteriskConfig, entry_secret_variable
from dispatch.tasks import cancel_and_wait
from telephony.ami_codec import BANNER_PREFIX, FrameReader, encode_action
from telephony.ami_events import (
    CallEvent,
    ChannelSnapshot,
    ListComplete,
    ListItem,
    OriginateResult,
    QueueMemberListed,
    Response,
)

log = logging.getLogger(__name__)

Sleep = Callable[[float, str], Awaitable[None]]


async def real_sleep(seconds: float, _why: str) -> None:
    await asyncio.sleep(seconds)


class LinkState(StrEnum):
    STARTING = "starting"
    CONNECTING = "connecting"
    SYNCING = "syncing"
    UP = "up"
    DOWN = "down"
    AUTH_FAILED = "auth_failed"
    NO_SECRET = "no_secret"
    STOPPED = "stopped"


# What answers our actions (the rest is call events): a tuple, which isinstance checks fastest.
_CONTROL = (Response, ChannelSnapshot, QueueMemberListed, ListComplete)


class AmiError(Exception):
    """Something went wrong on an AMI link; the message is fit for /healthz and the log."""


class AuthenticationFailed(AmiError):
    """Asterisk refused the login (Response: Error, Authentication failed)."""


class NotAsterisk(AmiError):
    """Something answered on the port, but not with an Asterisk manager's banner."""


class LinkDown(AmiError):
    """The connection is gone (or was never made): nothing can be sent, no answer will come."""


class ActionFailed(AmiError):
    """Asterisk answered an action with Response: Error."""


class AmiListener(Protocol):
    async def on_login(self, link: AmiLink) -> None:
        """Run after every login, before the link is up: the re-sync."""

    def on_messages(self, messages: list[CallEvent | OriginateResult]) -> None:
        """Every event of one socket read, in order (the hot path: no awaiting here)."""

    def on_disconnect(self) -> None:
        """The connection is gone (the next login re-syncs)."""


@dataclass
class _Pending:
    future: asyncio.Future[Response | tuple[Response, list[ListItem]]] | None = None
    callback: Callable[[Response | None], None] | None = None
    collect: bool = False
    response: Response | None = None
    items: list[ListItem] = field(default_factory=list)


class _Protocol(asyncio.Protocol):
    def __init__(self, link: AmiLink, loop: asyncio.AbstractEventLoop) -> None:
        self.link = link
        self.reader = FrameReader()
        self.transport: asyncio.Transport | None = None
        self.banner: asyncio.Future[str] = loop.create_future()
        # resolved (never failed, so nothing is left unretrieved) when the connection ends
        self.lost: asyncio.Future[Exception | None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.link._received(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)
        self.link._lost(self)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


class AmiLink:
    def __init__(
        self,
        config: AsteriskConfig,
        listener: AmiListener,
        *,
        sleep: Sleep = real_sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        on_state: Callable[[LinkState], None] | None = None,
    ) -> None:
        self.config = config
        self.listener = listener
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()
        self.on_state = on_state
        self.state = LinkState.STARTING
        self.since = clock()
        self.error: str | None = None
        self.banner: str | None = None
        self.connects = 0
        self.login_failures = 0
        self.next_attempt_at: float | None = None
        self.frames = 0
        self.skipped = 0
        self._ids = itertools.count(1)
        self._pending: dict[str, _Pending] = {}
        self._protocol: _Protocol | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._tick = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self.state is LinkState.UP

    async def start(self) -> None:
        if not self.config.secret:
            variable = entry_secret_variable("CARELINE_AMI_SECRET", self.config.name)
            self._set(LinkState.NO_SECRET, f"no AMI secret: set {variable} or CARELINE_AMI_SECRET")
            log.error("Asterisk %s: %s; calls on it are unavailable", self.config.name, self.error)
            return
        self._task = asyncio.create_task(self._run(), name=f"ami:{self.config.name}")

    async def stop(self) -> None:
        # Logoff ends the session; the loop must not take that for an outage and reconnect.
        self._stopping = True
        if self.up:
            with contextlib.suppress(AmiError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.request({"Action": "Logoff"})
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        if self._protocol is not None:
            self._protocol.close()
        self._set(LinkState.STOPPED)

    def _set(self, state: LinkState, error: str | None = None) -> None:
        if state is not self.state:
            self.since = self.clock()
        self.state = state
        self.error = error
        if self.on_state is not None:
            self.on_state(state)
        self._tick.set()
        self._tick = asyncio.Event()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Until `condition()` holds, checked at every change of state (bound it with a timeout)."""
        while True:
            tick = self._tick
            if condition():
                return
            await tick.wait()

    # -- the connection loop --------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            self.connects += 1
            try:
                await self._session()
            except AuthenticationFailed as exc:
                self.login_failures += 1
                self._set(
                    LinkState.AUTH_FAILED,
                    f"Asterisk refused the login of {self.config.username!r}: {exc}; check "
                    f"{entry_secret_variable('CARELINE_AMI_SECRET', self.config.name)} "
                    "(or CARELINE_AMI_SECRET)",
                )
                delay = self.config.auth_retry_seconds * self.rng.uniform(0.8, 1.2)
                log.error("Asterisk %s: %s; next try in %.0f s", self.config.name, self.error, delay)
                await self._wait(delay, "auth_retry")
                continue
            except (OSError, TimeoutError, AmiError) as exc:
                if self._stopping:
                    return
                reason = str(exc) or type(exc).__name__
                failures = 0 if self.state is LinkState.UP else failures + 1
            except Exception as exc:
                # A bug in our own code must not end the link for good: report it and reconnect.
                log.exception("Asterisk %s: the AMI session failed", self.config.name)
                reason = f"{type(exc).__name__}: {exc}"
                failures += 1
            delay = self._backoff(failures)
            self._set(LinkState.DOWN, f"{reason}; reconnecting in {delay:.1f} s")
            log.warning("Asterisk %s is down (%s)", self.config.name, self.error)
            await self._wait(delay, "reconnect")

    def _backoff(self, failures: int) -> float:
        """Capped exponential, half of it random, so many instances do not reconnect in step."""
        ceiling = min(
            self.config.reconnect_max_seconds, self.config.reconnect_min_seconds * 2.0 ** max(0, failures - 1)
        )
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    async def _wait(self, delay: float, why: str) -> None:
        self.next_attempt_at = self.clock() + delay
        await self.sleep(delay, why)
        self.next_attempt_at = None

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        self._set(LinkState.CONNECTING, self.error)
        protocol = _Protocol(self, loop)
        timeout = self.config.connect_timeout_seconds
        async with asyncio.timeout(timeout):
            await loop.create_connection(lambda: protocol, self.config.host, self.config.port)
        self._protocol = protocol
        try:
            await self._until(protocol, protocol.banner, timeout, "Asterisk said nothing")
            banner = protocol.banner.result()
            if not banner.startswith(BANNER_PREFIX):
                raise NotAsterisk(f"not an Asterisk manager at {self.config.host}:{self.config.port}")
            self.banner = banner
            async with asyncio.timeout(timeout):
                response = await self.request(
                    {
                        "Action": "Login",
                        "Username": self.config.username,
                        "Secret": self.config.secret,
                        "Events": "on",
                    },
                    check=False,
                )
            if not response.success:
                raise AuthenticationFailed(response.message or "Authentication failed")
            self._set(LinkState.SYNCING)
            await self.listener.on_login(self)
            self._set(LinkState.UP)
            log.info("Asterisk %s is up (%s)", self.config.name, banner)
            keepalive = asyncio.create_task(self._keepalive(protocol), name=f"ami-ping:{self.config.name}")
            try:
                cause = await protocol.lost
            finally:
                await cancel_and_wait(keepalive)
            raise LinkDown(f"the connection closed ({cause})" if cause else "Asterisk closed the connection")
        finally:
            self._protocol = None
            protocol.close()
            self._fail_pending()
            self.listener.on_disconnect()

    async def _until(
        self, protocol: _Protocol, future: asyncio.Future[Any], seconds: float, silence: str
    ) -> None:
        done, _ = await asyncio.wait(
            {future, protocol.lost}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
        )
        if future in done:
            return
        if protocol.lost in done:
            raise LinkDown("the connection closed")
        raise TimeoutError(f"{silence} in {seconds:g} s")

    async def _keepalive(self, protocol: _Protocol) -> None:
        while True:
            await self.sleep(self.config.ping_interval_seconds, "keepalive")
            try:
                async with asyncio.timeout(self.config.ping_timeout_seconds):
                    await self.request({"Action": "Ping"})
            except (AmiError, TimeoutError) as exc:
                log.warning("Asterisk %s did not answer a Ping (%s); reconnecting", self.config.name, exc)
                protocol.close()
                return

    # -- bytes in -------------------------------------------------------------------------------

    def _received(self, protocol: _Protocol, data: bytes) -> None:
        if protocol is not self._protocol:
            return
        reader = protocol.reader
        skipped = reader.skipped
        messages = reader.feed(data, self.clock())
        self.skipped += reader.skipped - skipped
        if reader.banner is not None and not protocol.banner.done():
            protocol.banner.set_result(reader.banner)
        if not messages:
            return
        self.frames += len(messages)
        events: list[CallEvent | OriginateResult] = []
        for message in messages:
            if isinstance(message, _CONTROL):
                self._control(message)
            else:
                events.append(message)
        if events:
            try:
                self.listener.on_messages(events)
            except Exception:
                # One bad event must not cost the connection (and every call on it).
                log.exception("Asterisk %s: handling events failed; carrying on", self.config.name)

    def _lost(self, protocol: _Protocol) -> None:
        # Whoever waits for an answer (the re-sync, a Ping) hears now, not at its timeout.
        if protocol is self._protocol:
            self._fail_pending()

    def _control(self, message: Response | ListItem | ListComplete) -> None:
        if isinstance(message, Response):
            pending = self._pending.get(message.action_id or "")
            if pending is None:
                return
            if pending.collect and message.success:
                pending.response = message
                return
            self._resolve(message.action_id or "", pending, message)
        elif isinstance(message, ChannelSnapshot | QueueMemberListed):
            pending = self._pending.get(message.action_id)
            if pending is not None and pending.collect:
                pending.items.append(message)
        elif isinstance(message, ListComplete):
            pending = self._pending.get(message.action_id)
            if pending is not None and pending.collect:
                response = pending.response or Response(message.action_id, True, "", {})
                self._resolve(message.action_id, pending, (response, pending.items))

    def _resolve(
        self, action_id: str, pending: _Pending, result: Response | tuple[Response, list[ListItem]]
    ) -> None:
        self._pending.pop(action_id, None)
        if pending.future is not None and not pending.future.done():
            pending.future.set_result(result)
        if pending.callback is not None:
            response = result if isinstance(result, Response) else result[0]
            pending.callback(response)

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if entry.future is not None and not entry.future.done():
                entry.future.set_exception(LinkDown("the connection closed before Asterisk answered"))
            if entry.callback is not None:
                entry.callback(None)

    # -- actions out ----------------------------------------------------------------------------

    def _write(self, fields: dict[str, Any], pending: _Pending) -> str:
        protocol = self._protocol
        if protocol is None or protocol.transport is None or protocol.transport.is_closing():
            raise LinkDown(f"Asterisk {self.config.name} is not connected")
        action_id = str(fields.get("ActionID") or f"careline-{self.config.name}-{next(self._ids)}")
        payload = encode_action({**fields, "ActionID": action_id})
        self._pending[action_id] = pending
        protocol.transport.write(payload)
        return action_id

    async def request(self, fields: dict[str, Any], *, check: bool = True) -> Response:
        """Send an action and wait for its Response (the caller bounds the wait with asyncio.timeout);
        ActionFailed for an Error when `check`."""
        future: asyncio.Future[Response | tuple[Response, list[ListItem]]] = (
            asyncio.get_running_loop().create_future()
        )
        action_id = self._write(fields, _Pending(future=future))
        try:
            result = await future
        finally:
            self._pending.pop(action_id, None)
        assert isinstance(result, Response)
        if check and not result.success:
            raise ActionFailed(f"{fields.get('Action')}: {result.message or 'error'}")
        return result

    async def request_list(self, fields: dict[str, Any]) -> list[ListItem]:
        """Send an action whose answer is an event list, and wait for its `…Complete`."""
        future: asyncio.Future[Response | tuple[Response, list[ListItem]]] = (
            asyncio.get_running_loop().create_future()
        )
        action_id = self._write(fields, _Pending(future=future, collect=True))
        try:
            result = await future
        finally:
            self._pending.pop(action_id, None)
        if isinstance(result, Response):
            raise ActionFailed(f"{fields.get('Action')}: {result.message or 'error'}")
        return result[1]

    def send(self, fields: dict[str, Any], on_response: Callable[[Response | None], None]) -> str:
        """Send an action without waiting: `on_response` gets its Response (None: the link dropped first)."""
        return self._write(fields, _Pending(callback=on_response))

    # -- what /healthz shows ------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        def iso(at: float | None) -> str | None:
            return None if at is None else dt.datetime.fromtimestamp(at, dt.UTC).isoformat()

        return {
            "status": self.state.value,
            "server": f"{self.config.host}:{self.config.port}",
            "since": iso(self.since),
            "error": self.error,
            "asterisk": self.banner,
            "connects": self.connects,
            "login_failures": self.login_failures,
            "next_attempt_at": iso(self.next_attempt_at),
            "frames": self.frames,
            "skipped_frames": self.skipped,
        }
