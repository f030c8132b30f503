"""A simulator of alarm units and device clouds, for driving a running Careline by hand.

Clearly a simulator: `careline simulate alarms` runs it against a running
`careline serve` through the real protocols (SIA DC-09 over TCP or UDP, signed
device-cloud JSON) and reports what was acknowledged; `serve` never starts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from telephony.alarms import dc09
from telephony.alarms.integrations import HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, sign

# SIA event code (and zone) each kind is sent as over DC-09.
SIA_BY_KIND = {
    "sos": "PA",
    "medical": "MA",
    "fire": "FA",
    "gas": "GA",
    "water": "WA",
    "tamper": "TA",
    "low_battery": "YT",
    "mains_loss": "AT",
    "mains_restore": "AR",
    "test": "RP",
    "cancel": "OC",
}


@dataclass
class Report:
    sent: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def add(self, answer: str, seconds: float) -> None:
        self.sent += 1
        self.answers[answer] += 1
        if answer in ("ack", "202", "200"):
            self.latencies.append(seconds)

    def describe(self) -> str:
        took = time.perf_counter() - self.started
        acked = len(self.latencies)
        rate = self.sent / took if took else 0.0
        lines = [
            f"sent {self.sent} in {took:.1f} s ({rate:.0f}/s); acknowledged {acked}",
            "answers: " + ", ".join(f"{k} {v}" for k, v in sorted(self.answers.items())),
        ]
        if self.latencies:
            ordered = sorted(self.latencies)
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            lines.append(f"send→ack p50 {statistics.median(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
        return "\n".join(lines)


def answer_name(frame: bytes | None) -> str:
    if not frame:
        return "no answer"
    try:
        decoded = dc09.decode_frame(
            frame,
            key_for=lambda _: None,
            now=dt.datetime.now(dt.UTC),
            window=(1e9, 1e9),
            tokens=dc09.ANSWER_TOKENS,
        )
    except dc09.Unsupported:
        return "encrypted answer"
    except dc09.Refusal:
        return "garbled answer"
    return decoded.header.token.lower()


class Dc09Unit:
    """One simulated unit: its account, its sequence counter, and a TCP or UDP link."""

    def __init__(self, host: str, port: int, account: str, *, udp: bool = False, wait: float = 10.0) -> None:
        self.host, self.port, self.account, self.udp, self.wait = host, port, account, udp, wait
        self.sequence = 0

    def frame(self, kind: str) -> bytes:
        self.sequence = self.sequence % 9999 + 1
        code = SIA_BY_KIND[kind]
        zone = "001" if kind not in ("mains_loss", "mains_restore", "test", "low_battery") else "000"
        return dc09.encode_message(
            "SIA-DCS",
            self.sequence,
            self.account,
            f"#{self.account}|N{code}{zone}",
            receiver="1",
            line="1",
            timestamp=dt.datetime.now(dt.UTC),
        )

    async def send(self, frame: bytes) -> bytes | None:
        if self.udp:
            return await self._udp(frame)
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(frame)
            await writer.drain()
            return await asyncio.wait_for(reader.readuntil(dc09.CR), self.wait)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return None
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _udp(self, frame: bytes) -> bytes | None:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bytes] = loop.create_future()

        class Link(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object) -> None:
                if not answer.done():
                    answer.set_result(data)

        transport, _ = await loop.create_datagram_endpoint(Link, remote_addr=(self.host, self.port))
        try:
            transport.sendto(frame)
            return await asyncio.wait_for(answer, self.wait)
        except TimeoutError:
            return None
        finally:
            transport.close()


@dataclass(frozen=True)
class CloudLink:
    url: str
    key: str
    secret: str

    async def send(self, http: aiohttp.ClientSession, device: str, kind: str) -> str:
        body = json.dumps(
            {
                "event_id": str(uuid.uuid4()),
                "device_id": device,
                "kind": kind,
                "time": dt.datetime.now(dt.UTC).isoformat(),
            }
        ).encode()
        stamp = str(int(time.time()))
        headers = {
            HEADER_KEY: self.key,
            HEADER_TIMESTAMP: stamp,
            HEADER_SIGNATURE: sign(self.secret, stamp, body),
        }
        headers["Content-Type"] = "application/json"
        try:
            async with http.post(self.url + "/api/v1/alarms", data=body, headers=headers) as resp:
                return str(resp.status)
        except aiohttp.ClientError:
            return "no answer"


async def _timed(report: Report, send: Callable[[], Awaitable[str]]) -> None:
    started = time.perf_counter()
    answer = await send()
    report.add(answer, time.perf_counter() - started)


async def dc09_stream(
    units: Sequence[Dc09Unit], kind: str, *, count: int, rate: float, concurrency: int = 100
) -> Report:
    """`count` alarms spread over the units at `rate` per second (0: as fast as they are answered)."""
    report = Report()
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        unit = units[i % len(units)]
        async with gate:
            frame = unit.frame(kind)
            await _timed(report, lambda: _dc09_answer(unit, frame))

    async with asyncio.TaskGroup() as group:
        for i in range(count):
            group.create_task(one(i))
            if rate > 0:
                await asyncio.sleep(1 / rate)
    return report


async def _dc09_answer(unit: Dc09Unit, frame: bytes) -> str:
    return answer_name(await unit.send(frame))


async def mains_restore_storm(units: Sequence[Dc09Unit], *, concurrency: int = 500) -> Report:
    """Power comes back to a district: every unit reports AC restore at once."""
    return await dc09_stream(units, "mains_restore", count=len(units), rate=0, concurrency=concurrency)


async def cloud_stream(
    link: CloudLink, devices: Sequence[str], kind: str, *, count: int, rate: float, concurrency: int = 50
) -> Report:
    report = Report()
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as http:

        async def one(i: int) -> None:
            async with gate:
                await _timed(report, lambda: link.send(http, devices[i % len(devices)], kind))

        async with asyncio.TaskGroup() as group:
            for i in range(count):
                group.create_task(one(i))
                if rate > 0:
                    await asyncio.sleep(1 / rate)
    return report


@dataclass(frozen=True)
class Plan:
    """What `careline simulate alarms` was asked for."""

    transport: str  # tcp, udp or http
    kind: str
    count: int
    rate: float
    storm: bool
    host: str
    port: int
    url: str
    key: str = ""
    secret: str = ""


async def demo_devices(conn: Any, transport: str, limit: int) -> list[str]:
    """Identifiers of registered devices to send as: DC-09 accounts, or cloud ids for HTTP."""
    column = "cloud_id" if transport == "http" else "dc09_account"
    rows = await conn.fetch(
        f"SELECT {column} AS ident FROM devices WHERE {column} IS NOT NULL AND status = 'active' "
        "ORDER BY id LIMIT $1",
        limit,
    )
    return [r["ident"] for r in rows]


async def simulate(plan: Plan, devices: Sequence[str]) -> Report:
    if not devices:
        raise ValueError("no devices to send as")
    if plan.transport == "http":
        kind = "mains_loss" if plan.storm else plan.kind
        link = CloudLink(plan.url, plan.key, plan.secret)
        count = len(devices) if plan.storm else plan.count
        return await cloud_stream(link, devices, kind, count=count, rate=0 if plan.storm else plan.rate)
    units = [Dc09Unit(plan.host, plan.port, d, udp=plan.transport == "udp") for d in devices]
    if plan.storm:
        return await mains_restore_storm(units)
    return await dc09_stream(units, plan.kind, count=plan.count, rate=plan.rate)
