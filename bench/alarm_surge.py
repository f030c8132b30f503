"""Alarm surge: sustained alarms per second over SIA DC-09 and over signed HTTP, receipt→ACK latency.

    .venv/bin/python -m bench.alarm_surge [--rate 500] [--seconds 10] [--units 100]

In one run, on one fresh database (embedded PostgreSQL, fsync on, or CARELINE_DATABASE_URL):
1. bare:  single-row INSERT + COMMIT latency, the raw limit of this database here, at `--rate`
          per second for `--seconds` (the ratio's base: it spreads over the same time as the
          load, so it meets the same disk and scheduler hiccups), and 1,000 back to back
2. dc09:  `--units` units on their own TCP connections send SIA-DCS frames (one message in
          five an SOS that raises or joins an alert, the rest periodic tests; each unit's SOS
          falls on another round, so the presses are spread over time as in a real surge
          rather than all units pressing in the same fifth of a second) at `--rate` per
          second for `--seconds`; the ACK is sent only after the commit
3. http:  the same rate and mix of signed device-cloud posts, each cloud on one kept-alive
          HTTP/1.1 connection written and read by hand (a client library would cost the
          sending process more CPU than the receiver spends, on the same two cores)
Two latencies for each: receipt→ACK, as the issue defines it, taken in the receiver from the
moment it has a frame (or a request) to the moment its ACK (or 202) is ready to write, that is
after the commit; and send→ACK, as the unit sees it, which adds both hops over loopback and the
sending process's own event loop. The ratio is receipt→ACK p99 over the bare commit's p99.
The senders run in a process of their own (as units and device clouds are other machines), so
sending costs the receiver nothing but the bytes; each reports its latencies to this process.
Then every acknowledged alarm is counted in the database: "lost" is acknowledged but absent.
Target (the alarm intake issue): 500 alarms/s, p99 <= 3x the bare commit, zero lost.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import math
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from bench.database import bare_commit_latencies, bench_database, ms, percentile
from dispatch.alert_desk import AlertDesk
from dispatch.api.app import build_app
from dispatch.api.keys import ALERT_DESK
from dispatch.config import load_config
from dispatch.database import connect, create_pool
from dispatch.runtime import Runtime, freeze_startup_heap
from telephony.alarms import dc09, http_api
from telephony.alarms.dc09_server import Dc09Server
from telephony.alarms.integrations import (
    HEADER_KEY,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    add_integration,
    sign,
)

SECRET_KEY = "bench-secret-key"


class TimedDc09Server(Dc09Server):
    """The receiver as it is, timing each frame from the moment it was read to its answer."""

    def __init__(self, runtime: Runtime, desk: AlertDesk) -> None:
        super().__init__(runtime, desk, environ={})
        self.latencies: list[float] = []

    async def answer(self, raw: bytes, transport: str) -> bytes | None:
        started = time.perf_counter()
        answer = await super().answer(raw, transport)
        self.latencies.append(time.perf_counter() - started)
        return answer


def timed_posts(latencies: list[float]) -> Callable[..., Awaitable[web.StreamResponse]]:
    """A middleware timing each alarm post from the moment its request was read to its response."""

    @web.middleware
    async def timing(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        response = await handler(request)
        if request.path == "/api/v1/alarms":
            latencies.append(time.perf_counter() - started)
        return response

    return timing


async def seed(dsn: str, units: int) -> None:
    conn = await connect(dsn)
    try:
        district = await conn.fetchval(
            "INSERT INTO districts (code, name) VALUES ('B', '新城区') RETURNING id"
        )
        street = await conn.fetchval(
            "INSERT INTO streets (district_id, name) VALUES ($1, '街道') RETURNING id", district
        )
        community = await conn.fetchval(
            """INSERT INTO communities (street_id, name, lat, lon)
               VALUES ($1, '社区', 40.85, 111.7) RETURNING id""",
            street,
        )
        rows = [
            (f"15010219450101{i:04d}", f"老人{i}", "F", dt.date(1945, 1, 1), community) for i in range(units)
        ]
        await conn.copy_records_to_table(
            "residents", records=rows, columns=["id_number", "name", "sex", "birth_date", "community_id"]
        )
        residents = [r["id"] for r in await conn.fetch("SELECT id FROM residents ORDER BY id")]
        await conn.executemany(
            """INSERT INTO devices (serial, kind, resident_id, dc09_account, cloud_id)
               VALUES ($1, 'home_unit', $2, $3, $4)""",
            [(f"GW-{i}", r, f"{0xB00000 + i:06X}", f"cloud-{i}") for i, r in enumerate(residents)],
        )
    finally:
        await conn.close()


def is_press(i: int, units: int) -> bool:
    """One message in five is an SOS, each unit's on another round (spread over time)."""
    return (i // units + i % units) % 5 == 0


async def paced(
    rate: float, seconds: float, units: int, send: Callable[[int], Awaitable[None]]
) -> list[float]:
    """Start one send every 1/rate seconds, round-robin over the units; each unit waits for its
    previous answer (as a real unit does), so a slow receiver shows up as latency, not as loss.
    The latencies are in send order (NaN where a send did not finish), so that each can be told
    a press or a test report by `is_press`."""
    total = int(rate * seconds)
    latencies = [math.nan] * total
    locks = [asyncio.Lock() for _ in range(units)]
    started = time.perf_counter()

    async def one(i: int) -> None:
        async with locks[i % units]:
            t0 = time.perf_counter()
            await send(i)
            latencies[i] = time.perf_counter() - t0

    async with asyncio.TaskGroup() as group:
        for i in range(total):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            group.create_task(one(i))
    return latencies


@dataclasses.dataclass(frozen=True)
class Target:
    """Where the sender process sends, and what it signs with."""

    kind: str  # "dc09" or "http"
    port: int
    key: str = ""
    secret: str = ""


async def send_all(target: Target, rate: float, seconds: float, units: int) -> dict[str, object]:
    """The sender process: `units` units (TCP connections, or HTTP clients) at `rate` per second."""
    acked = 0
    if target.kind == "dc09":
        links = [await asyncio.open_connection("127.0.0.1", target.port) for _ in range(units)]

        async def send(i: int) -> None:
            nonlocal acked
            reader, writer = links[i % units]
            account = f"{0xB00000 + i % units:06X}"
            code = "PA" if is_press(i, units) else "RP"
            frame = dc09.encode_message(
                "SIA-DCS",
                i // units % 9999 + 1,
                account,
                f"#{account}|N{code}001",
                receiver="1",
                line="1",
                timestamp=dt.datetime.now(dt.UTC),
            )
            writer.write(frame)
            await writer.drain()
            answer = await reader.readuntil(b"\r")
            if b'"ACK"' in answer:
                acked += 1

        try:
            started = time.perf_counter()
            latencies = await paced(rate, seconds, units, send)
            took = time.perf_counter() - started
        finally:
            for _, writer in links:
                writer.close()
        return {"latencies": latencies, "took": took, "acked": acked}

    clouds = [await asyncio.open_connection("127.0.0.1", target.port) for _ in range(units)]

    async def post(i: int) -> None:
        nonlocal acked
        body = json.dumps(
            {
                "event_id": str(uuid.uuid4()),
                "device_id": f"cloud-{i % units}",
                "kind": "sos" if is_press(i, units) else "test",
                "time": dt.datetime.now(dt.UTC).isoformat(),
            }
        ).encode()
        stamp = str(int(time.time()))
        head = (
            f"POST /api/v1/alarms HTTP/1.1\r\nHost: 127.0.0.1:{target.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{HEADER_KEY}: {target.key}\r\n{HEADER_TIMESTAMP}: {stamp}\r\n"
            f"{HEADER_SIGNATURE}: {sign(target.secret, stamp, body)}\r\n\r\n"
        )
        reader, writer = clouds[i % units]
        writer.write(head.encode() + body)
        await writer.drain()
        status_line = await reader.readuntil(b"\r\n")
        length = 0
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        await reader.readexactly(length)
        if status_line.split()[1] == b"202":
            acked += 1

    try:
        started = time.perf_counter()
        latencies = await paced(rate, seconds, units, post)
        took = time.perf_counter() - started
    finally:
        for _, writer in clouds:
            writer.close()
    return {"latencies": latencies, "took": took, "acked": acked}


async def run_sender(
    target: Target, rate: float, seconds: float, units: int
) -> tuple[list[float], float, int]:
    """Start the sender process, wait for it, and read what it measured."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.alarm_surge",
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
        "--units",
        str(units),
        "--send",
        json.dumps(dataclasses.asdict(target)),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the {target.kind} sender failed ({process.returncode})")
    report = json.loads(out)
    return report["latencies"], report["took"], report["acked"]


async def main(rate: float, seconds: float, units: int) -> None:
    async with bench_database() as dsn:
        base = load_config(environ={})
        config = dataclasses.replace(
            base,
            database=dataclasses.replace(base.database, url=dsn),
            alarms=dataclasses.replace(base.alarms, dc09_port=0, dc09_duplicate_window_seconds=3600),
            security=dataclasses.replace(base.security, secret_key=SECRET_KEY),
        )
        conn = await connect(dsn)
        back_to_back = await bare_commit_latencies(conn, 1000)
        bare = await bare_commit_latencies(conn, int(rate * seconds), rate=rate)
        integration, secret = await add_integration(conn, "bench", SECRET_KEY)
        await conn.close()
        await seed(dsn, units)

        pool = await create_pool(dsn, min_size=10, max_size=40)
        runtime = Runtime(config=config, pool=pool)
        desk = AlertDesk(runtime)
        server = TimedDc09Server(runtime, desk)
        await server.start()
        app = build_app(runtime, [], [http_api])
        app[ALERT_DESK] = desk
        http_receipt: list[float] = []
        app.middlewares.insert(0, timed_posts(http_receipt))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        assert server.port is not None
        freeze_startup_heap()  # as `careline serve` does once its components have started
        try:
            dc09_latency, dc09_took, dc09_acked = await run_sender(
                Target("dc09", server.port), rate, seconds, units
            )
            http_latency, http_took, http_acked = await run_sender(
                Target("http", runner.addresses[0][1], integration.key, secret), rate, seconds, units
            )
        finally:
            await runner.cleanup()
            await server.stop()
        acked = {"dc09": dc09_acked, "http": http_acked}
        stored = {
            source: await pool.fetchval("SELECT count(*) FROM alarms WHERE source = $1", source)
            for source in ("dc09", "http")
        }
        await pool.close()

        bare_p99 = percentile(bare, 99)
        print(
            "database:",
            "CARELINE_DATABASE_URL" if os.environ.get("CARELINE_DATABASE_URL") else "embedded, fsync on",
        )
        print(
            f"bare INSERT+COMMIT   p50 {ms(percentile(bare, 50))}  p99 {ms(bare_p99)}"
            f"   ({len(bare)} at {rate:g}/s; back to back: p50 {ms(percentile(back_to_back, 50)).strip()}"
            f", p99 {ms(percentile(back_to_back, 99)).strip()})"
        )
        for name, receipt, latency, took in (
            ("DC-09 TCP", server.latencies, dc09_latency, dc09_took),
            ("HTTP", http_receipt, http_latency, http_took),
        ):
            source = "dc09" if name.startswith("DC") else "http"
            done = [x for x in latency if not math.isnan(x)]
            p99 = percentile(receipt, 99)
            print(
                f"{name:<10} {len(done) / took:4.0f} alarms/s (asked {rate:g})   acked {acked[source]}"
                f"   stored {stored[source]}   lost {acked[source] - stored[source]}"
            )
            print(
                f"  receipt→ACK  p50 {ms(percentile(receipt, 50))}  p99 {ms(p99)}"
                f"  ({p99 / bare_p99:.1f}x bare p99)"
            )
            print(f"  send→ACK     p50 {ms(percentile(done, 50))}  p99 {ms(percentile(done, 99))}")
            for label, press in (("SOS", True), ("tests", False)):
                part = [x for i, x in enumerate(latency) if is_press(i, units) == press and not math.isnan(x)]
                print(f"    {label:<10} p50 {ms(percentile(part, 50))}  p99 {ms(percentile(part, 99))}")
        print("target: 500 alarms/s, p99 <= 3x bare, lost 0")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--units", type=int, default=100)
    parser.add_argument("--send", metavar="TARGET", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.send:
        report = asyncio.run(send_all(Target(**json.loads(args.send)), args.rate, args.seconds, args.units))
        print(json.dumps(report))
    else:
        asyncio.run(main(args.rate, args.seconds, args.units))
