"""What every benchmark needs: a fresh migrated database, and the raw limit to compare with.

A benchmark runs against an embedded PostgreSQL in a temporary directory (the
same server `careline serve` starts by default, fsync on), or against
CARELINE_DATABASE_URL when set (a new database is created there and dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from dispatch.database import Conn, connect
from dispatch.migrate import apply_migrations
from dispatch.pgserver import EmbeddedPostgres


@contextlib.asynccontextmanager
async def bench_database() -> AsyncIterator[str]:
    """The DSN of an empty, migrated database that exists for this run only."""
    external = os.environ.get("CARELINE_DATABASE_URL")
    if external:
        name = f"bench_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(external)
        await admin.execute(f'CREATE DATABASE "{name}"')
        dsn = urlunsplit(urlsplit(external)._replace(path="/" + name))
        try:
            await _migrate(dsn)
            yield dsn
        finally:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await admin.close()
        return
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedPostgres(Path(tmp) / "pg", settings={"max_connections": "200"})
        dsn = await server.start()
        try:
            await _migrate(dsn)
            yield dsn
        finally:
            await server.stop()


async def _migrate(dsn: str) -> None:
    conn = await connect(dsn)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()


async def bare_commit_latencies(conn: Conn, count: int, *, rate: float | None = None) -> list[float]:
    """Seconds for each of `count` single-row INSERT + COMMIT: the floor for anything durable.

    Back to back by default; at `rate` per second when given, so that they spread over the same
    time as a load sent at that rate and meet the same disk and scheduler hiccups (1,000 commits
    back to back take half a second here, and their p99 is the 10th-worst of that half second)."""
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS bench_raw (id bigserial PRIMARY KEY, body jsonb NOT NULL, at timestamptz)"
    )
    latencies = []
    begun = time.perf_counter()
    for i in range(count):
        if rate is not None and (wait := begun + i / rate - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        started = time.perf_counter()
        async with conn.transaction():
            await conn.execute("INSERT INTO bench_raw (body, at) VALUES ($1, now())", {"n": i})
        latencies.append(time.perf_counter() - started)
    return latencies


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; what p50/p99 mean in every report."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[max(0, min(998, round(q * 10) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"
