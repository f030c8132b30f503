"""AMI events/s: what Careline takes from an Asterisk, beside the raw limit of the same bytes.

    .venv/bin/python -m bench.ami_events [--calls 2000] [--residents 5000]

In one run, on one fresh database, the same stream of made-up calls (shaped like the
recordings: the same events, the same noise, every caller a resident) is served over
TCP by an AMI peer in its own process:

1. raw:      a client that logs in, reads the bytes and splits them into frames, no more;
2. careline: the real link, codec, call tracker and recorder (identification, call rows,
             call.* events), from the login until the last call row is written.

Both figures are frames/s over the whole stream (noise included: that is what Asterisk
sends); Careline's includes writing the last batch after the last frame is read, which a
longer stream spreads thinner. Targets (the telephony issue): >= 20,000 events/s with call
rows persisted, and >= 1/4 of the raw rate.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from bench.database import bench_database
from dispatch.alert_desk import AlertDesk
from dispatch.config import AsteriskConfig, load_config
from dispatch.database import Conn, connect, create_pool
from dispatch.runtime import Runtime, freeze_startup_heap
from telephony.ami import LinkState
from telephony.call_store import TelephonyMetrics
from telephony.sim_calls import CallFactory, interleave
from telephony.simulator import AmiPeer, Raw
from telephony.switchboard import AsteriskServer

SECRET = "bench-secret"


def numbers_of(residents: int) -> list[str]:
    """The residents' mobiles as a trunk delivers them."""
    return [f"1390471{i:04d}" for i in range(residents)]


async def seed(conn: Conn, residents: int) -> None:
    """Residents with a mobile each (`numbers_of`)."""
    district = await conn.fetchval("INSERT INTO districts (code, name) VALUES ('B', '新城区') RETURNING id")
    street = await conn.fetchval(
        "INSERT INTO streets (district_id, name) VALUES ($1, '街道') RETURNING id", district
    )
    community = await conn.fetchval(
        "INSERT INTO communities (street_id, name) VALUES ($1, '社区') RETURNING id", street
    )
    rows = [
        (f"15010219450101{i:04d}", f"老人{i}", "F", dt.date(1945, 1, 1), community) for i in range(residents)
    ]
    await conn.copy_records_to_table(
        "residents", records=rows, columns=["id_number", "name", "sex", "birth_date", "community_id"]
    )
    ids = [r["id"] for r in await conn.fetch("SELECT id FROM residents ORDER BY id")]
    await conn.copy_records_to_table(
        "resident_phones",
        records=[(rid, f"+86{n}", "mobile") for rid, n in zip(ids, numbers_of(residents), strict=True)],
        columns=["resident_id", "e164", "kind"],
    )


def stream(numbers: list[str], calls: int) -> tuple[bytes, int]:
    """The calls, a few hundred ms apart as on a busy floor, as one byte string; and its frame count."""
    rng = random.Random(12349)
    factory = CallFactory(epoch=1_795_400_000)
    built = [
        factory.inbound(
            rng.choice(numbers),
            answered_by=None if rng.random() < 0.15 else rng.choice(("8001", "8002")),
            ring_seconds=rng.uniform(2, 20),
            talk_seconds=rng.uniform(20, 240),
        )
        for _ in range(calls)
    ]
    frames = [frame for _, frame in interleave(built, [n * 0.3 for n in range(calls)])]
    return b"".join(frame + b"\r\n\r\n" for frame in frames), len(frames)


async def serve(data: bytes) -> None:
    """The peer process: plays the stream to every client that logs in; says its port on stdout."""
    peer = AmiPeer(username="bench", secret=SECRET, track_channels=False, every_login=[Raw(data)])
    await peer.start()
    print(peer.port, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await peer.stop()


class _Splitter(asyncio.Protocol):
    """The raw limit: the same transport as Careline's link, and only splitting into frames."""

    def __init__(self, frames: int, done: asyncio.Future[float]) -> None:
        self.wanted = frames + 1  # the Login response is a frame too
        self.done = done
        self.pending = b""
        self.seen = -1  # the banner line and the Login response: counted from the response
        self.started = 0.0

    def data_received(self, data: bytes) -> None:
        if not self.started:
            self.started = time.perf_counter()
        parts = (self.pending + data).split(b"\r\n\r\n")
        self.pending = parts.pop()
        self.seen += len(parts)
        if self.seen >= self.wanted - 1 and not self.done.done():
            self.done.set_result(time.perf_counter() - self.started)


async def raw_rate(port: int, frames: int) -> float:
    """Frames/s of a client that only reads and splits: the limit of this machine, socket included."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    transport, _ = await loop.create_connection(lambda: _Splitter(frames, done), "127.0.0.1", port)
    transport.write(
        f"Action: Login\r\nActionID: raw-1\r\nUsername: bench\r\nSecret: {SECRET}\r\n\r\n".encode()
    )
    try:
        async with asyncio.timeout(600):
            took = await done
    finally:
        transport.close()
    return frames / took


async def careline_rate(runtime: Runtime, port: int, frames: int, calls: int) -> tuple[float, int]:
    config = AsteriskConfig(name="bench", port=port, username="bench", secret=SECRET)
    logged_in = 0.0

    server = AsteriskServer(runtime, config, AlertDesk(runtime), TelephonyMetrics(runtime.metrics))
    watch = server.link.on_state

    def on_state(state: LinkState) -> None:
        nonlocal logged_in
        if state is LinkState.SYNCING:
            logged_in = time.perf_counter()
        if watch is not None:
            watch(state)

    server.link.on_state = on_state
    ended = asyncio.Event()
    count = 0

    async def listen(_event: object) -> None:
        nonlocal count
        count += 1
        if count == calls:
            ended.set()

    subscription = runtime.bus.subscribe("bench", listen, prefix="call.ended", size=calls + 1, lossless=True)
    await server.start()
    freeze_startup_heap()  # as `careline serve` does once its components have started
    try:
        async with asyncio.timeout(600):
            await ended.wait()
        took = time.perf_counter() - logged_in
    finally:
        await server.stop()
        await subscription.close()
    async with runtime.pool.acquire() as conn:
        rows = int(await conn.fetchval("SELECT count(*) FROM calls WHERE ended_at IS NOT NULL"))
    return frames / took, rows


async def main(calls: int, residents: int, blob: Path, data: bytes, frames: int) -> None:
    async with bench_database() as dsn:
        conn = await connect(dsn)
        await seed(conn, residents)
        await conn.close()
        peer = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.ami_events", "--serve", str(blob), stdout=asyncio.subprocess.PIPE
        )
        try:
            assert peer.stdout is not None
            async with asyncio.timeout(30):
                port = int(await peer.stdout.readline())
            raw = await raw_rate(port, frames)
            base = load_config(environ={})
            config = dataclasses.replace(base, database=dataclasses.replace(base.database, url=dsn))
            pool = await create_pool(dsn, min_size=2, max_size=10)
            try:
                rate, rows = await careline_rate(Runtime(config=config, pool=pool), port, frames, calls)
            finally:
                await pool.close()
        finally:
            peer.terminate()
            await peer.wait()
    print(
        "database:",
        "CARELINE_DATABASE_URL" if os.environ.get("CARELINE_DATABASE_URL") else "embedded, fsync on",
    )
    print(f"stream: {calls} calls, {frames} frames, {len(data) / 1e6:.1f} MB, {residents} residents")
    print(f"raw read + split      {raw:12,.0f} frames/s")
    print(f"careline (persisted)  {rate:12,.0f} frames/s   {rows} call rows written")
    print(f"ratio                 {rate / raw:12.2f}       (targets: >= 20,000/s and >= 0.25 of raw)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--residents", type=int, default=5000)
    parser.add_argument("--serve", metavar="STREAM", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(Path(args.serve).read_bytes()))
    else:
        stream_bytes, frame_count = stream(numbers_of(args.residents), args.calls)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "stream.ami"
            path.write_bytes(stream_bytes)
            asyncio.run(main(args.calls, args.residents, path, stream_bytes, frame_count))
