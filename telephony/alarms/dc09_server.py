"""The SIA DC-09 receiver: TCP and UDP on one port, an ACK only after the alarm is committed.

Thin around the codec (`dc09.py`) and intake (`intake.py`): a frame is decoded,
committed, and only then answered. Whatever a connection sends, the server
carries on: frames are bounded (`dc09.MAX_FRAME`), an idle connection is closed
after `alarms.dc09_read_timeout_seconds`, every connection and datagram is
handled in its own task that this component owns and cancels on stop, and any
failure is confined to that one frame (which is then not answered: the unit
resends, and a resend is never stored twice).

AES keys come from the environment only: `CARELINE_DC09_KEY_<ACCOUNT>` (upper-case
hex account) = 32/48/64 hex digits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from typing import Any

import asyncpg
from prometheus_client import Counter, Gauge

from dispatch.alert_desk import AlertDesk
from dispatch.components import Health
from dispatch.runtime import Runtime
from telephony.alarms import dc09
from telephony.alarms.contact_id import ContactIdEvent
from telephony.alarms.intake import DATABASE_DOWN, store
from telephony.alarms.kinds import AlarmSource
from telephony.alarms.messages import DeviceKey, IncomingAlarm, Message

log = logging.getLogger(__name__)

KEY_PREFIX = "CARELINE_DC09_KEY_"
REBIND_SECONDS = 5.0
WRITE_TIMEOUT = 10.0


def keys_from_environment(environ: Mapping[str, str]) -> tuple[dict[str, bytes], list[str]]:
    """(keys by upper-case account, names of variables whose value is not a key)."""
    keys: dict[str, bytes] = {}
    bad: list[str] = []
    for name, value in environ.items():
        if not name.startswith(KEY_PREFIX):
            continue
        try:
            keys[name.removeprefix(KEY_PREFIX).upper()] = dc09.parse_key(value)
        except ValueError:
            bad.append(name)
    return keys, bad


def frame_message(frame: dc09.Frame, received_at: Any, duplicate_window: float) -> Message:
    """What a decoded frame says, as intake takes it; Unreadable when its data is not SIA/CID."""
    header = frame.header
    account = header.account.upper()
    alarms: tuple[IncomingAlarm, ...] = ()
    if header.token == "SIA-DCS":
        alarms = tuple(
            IncomingAlarm(
                kind=e.kind,
                qualifier=e.qualifier,
                code=e.code,
                zone=e.zone or None,
                partition=e.modifiers.get("ri"),
                description=e.text,
                details={"modifiers": e.modifiers, "xdata": list(frame.extended)}
                if e.modifiers or frame.extended
                else {},
                sender_at=frame.timestamp,
            )
            for e in dc09.parse_sia_events(frame.data)
        )
    elif header.token == "ADM-CID":
        cid: ContactIdEvent = dc09.parse_adm_cid_data(frame.data, account)
        alarms = (
            IncomingAlarm(
                kind=cid.kind,
                qualifier=cid.qualifier,
                code=cid.code,
                zone=cid.zone,
                partition=cid.group,
                description=cid.description,
                details={"xdata": list(frame.extended)} if frame.extended else {},
                sender_at=frame.timestamp,
            ),
        )
    supervision = header.token == "NULL"
    return Message(
        source=AlarmSource.DC09,
        sender=f"dc09:{account}",
        actor=f"dc09:{account}",
        device=DeviceKey(dc09_account=account),
        payload=frame.text,
        alarms=alarms,
        received_at=received_at,
        # A link test stores nothing, so there is nothing to repeat.
        receipt_key=None
        if supervision
        else f"{account}/{header.receiver or ''}/{header.line}/{header.sequence}",
        digest=frame.digest,
        duplicate_window_seconds=duplicate_window,
    )


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, server: Dc09Server) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.server.datagram(data, addr)


class Dc09Server:
    """A component: TCP + UDP listeners on `alarms.dc09_host:dc09_port`."""

    name = "dc09"

    def __init__(self, runtime: Runtime, desk: AlertDesk, environ: Mapping[str, str] | None = None) -> None:
        self.runtime = runtime
        self.desk = desk
        self.settings = runtime.config.alarms
        self.keys, self.bad_keys = keys_from_environment(os.environ if environ is None else environ)
        for name in self.bad_keys:
            log.error("%s is not a 128/192/256-bit hex key; that account's encrypted frames get DUH", name)
        self._tcp: asyncio.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._rebind: asyncio.Task[None] | None = None
        self.port: int | None = None
        self.bind_error: str | None = None
        self._frames = Counter(
            "careline_dc09_frames",
            "DC-09 frames by transport and answer",
            ["transport", "answer"],
            registry=runtime.metrics,
        )
        self._connections = Gauge(
            "careline_dc09_connections", "Open DC-09 TCP connections", registry=runtime.metrics
        )
        self._open = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._bind()
        except OSError as exc:
            # A taken port must not stop calls, SMS and the console: /healthz says so, and we retry.
            self.bind_error = f"{type(exc).__name__}: {exc}"
            log.error(
                "DC-09 receiver cannot listen on %s:%s (%s); retrying",
                self.settings.dc09_host,
                self.settings.dc09_port,
                exc,
            )
            self._rebind = asyncio.create_task(self._keep_binding(), name="dc09-rebind")

    async def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        host, wanted = self.settings.dc09_host, self.settings.dc09_port
        for attempt in range(20):
            tcp = await asyncio.start_server(self._connection, host, wanted, limit=dc09.MAX_FRAME + 64)
            port = tcp.sockets[0].getsockname()[1]
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Datagrams(self), local_addr=(host, port)
                )
            except OSError:
                tcp.close()
                await tcp.wait_closed()
                if wanted != 0 or attempt == 19:
                    raise
                continue
            self._tcp, self._udp, self.port, self.bind_error = tcp, transport, port, None
            log.info("DC-09 receiver listening on %s:%s (TCP and UDP)", host, port)
            return

    async def _keep_binding(self) -> None:
        while self._tcp is None:
            await asyncio.sleep(REBIND_SECONDS)
            try:
                await self._bind()
            except OSError as exc:
                self.bind_error = f"{type(exc).__name__}: {exc}"

    async def stop(self) -> None:
        if self._rebind is not None:
            self._rebind.cancel()
            await self._reap([self._rebind])
            self._rebind = None
        if self._tcp is not None:
            self._tcp.close()
        if self._udp is not None:
            self._udp.close()
        tasks = list(self._tasks)
        self._stopping = True
        try:
            for task in tasks:
                task.cancel()
            await self._reap(tasks)
        finally:
            self._stopping = False
        if self._tcp is not None:
            await self._tcp.wait_closed()
        self._tcp = self._udp = None

    async def _reap(self, tasks: list[asyncio.Task[None]]) -> None:
        """Wait for tasks we cancelled; a cancel of our own caller still propagates."""
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.warning("DC-09 task ended with %r", result)
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise asyncio.CancelledError

    async def health(self) -> Health:
        ok = self._tcp is not None and not self.bad_keys
        return Health(
            ok,
            {
                "status": "ok" if ok else "degraded",
                "listening": f"{self.settings.dc09_host}:{self.port}" if self._tcp is not None else None,
                "error": self.bind_error
                or (f"bad keys: {', '.join(self.bad_keys)}" if self.bad_keys else None),
                "connections": self._open,
                "encrypted_accounts": len(self.keys),
            },
        )

    # -- one frame ---------------------------------------------------------------------------

    async def answer(self, raw: bytes, transport: str) -> bytes | None:
        """The bytes to send back for one frame (None: say nothing), after any commit."""
        now = self.runtime.clock()
        answer = await self._answer(raw, now)
        self._frames.labels(transport, _answer_name(answer)).inc()
        return answer

    async def _answer(self, raw: bytes, now: Any) -> bytes | None:
        try:
            frame = dc09.decode_frame(
                raw, key_for=self.keys.get, now=now, window=self.settings.dc09_time_window_seconds
            )
            message = frame_message(frame, now, self.settings.dc09_duplicate_window_seconds)
        except dc09.BadCrc:
            return None
        except dc09.Unsupported as exc:
            return dc09.duh(exc.header)
        except dc09.Refusal as exc:
            log.info("DC-09 frame refused with NAK: %s", exc)
            return dc09.nak(now)
        try:
            await store(self.runtime, self.desk, message)
        except (*DATABASE_DOWN, asyncpg.PostgresError) as exc:
            log.warning(
                "DC-09 %s seq %s not stored (%s); not acknowledged, the unit will resend",
                message.sender,
                frame.header.sequence,
                type(exc).__name__,
            )
            return None
        return dc09.ack(frame.header, now, self.keys.get(frame.header.account.upper()))

    # -- TCP ---------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or len(self._tasks) >= self.settings.dc09_max_connections:
            writer.close()
            return
        self._tasks.add(task)
        self._open += 1
        self._connections.inc()
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            # Ended by our own stop: end quietly. (Python 3.11's stream server reads a cancelled
            # connection task's exception and logs a traceback for every unit still connected.)
            if not self._stopping:
                raise
        except (ConnectionError, OSError) as exc:
            log.debug("DC-09 connection dropped: %s", exc)
        except Exception:
            # One connection's surprise must not reach the listener or any other connection.
            log.exception("DC-09 connection failed")
        finally:
            self._tasks.discard(task)
            self._open -= 1
            self._connections.dec()
            writer.close()
            with contextlib.suppress(ConnectionError, OSError, TimeoutError):
                async with asyncio.timeout(1):
                    await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                async with asyncio.timeout(self.settings.dc09_read_timeout_seconds):
                    chunk = await reader.readuntil(dc09.CR)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                # Idle, closed, or a "frame" longer than any frame can be: this connection is done.
                return
            start = chunk.find(dc09.LF)
            if start < 0:
                continue
            answer = await self.answer(chunk[start:], "tcp")
            if answer is not None:
                writer.write(answer)
                async with asyncio.timeout(WRITE_TIMEOUT):
                    await writer.drain()

    # -- UDP ---------------------------------------------------------------------------------

    def datagram(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(data) > dc09.MAX_FRAME + 64 or len(self._tasks) >= self.settings.dc09_max_connections:
            self._frames.labels("udp", "dropped").inc()
            return
        task = asyncio.create_task(self._datagram(data, addr), name="dc09-udp")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _datagram(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        start, end = data.find(dc09.LF), data.rfind(dc09.CR)
        if start < 0 or end < start:
            self._frames.labels("udp", "none").inc()
            return
        try:
            answer = await self.answer(data[start : end + 1], "udp")
        except Exception:
            log.exception("DC-09 datagram failed")
            return
        if answer is not None and self._udp is not None and not self._udp.is_closing():
            self._udp.sendto(answer, addr)


def _answer_name(answer: bytes | None) -> str:
    if answer is None:
        return "none"
    for name in ("ACK", "NAK", "DUH"):
        if f'"{name}"'.encode() in answer[:20] or f'"*{name}"'.encode() in answer[:20]:
            return name.lower()
    return "other"
