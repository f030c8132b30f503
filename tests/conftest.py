"""Test fixtures: one real PostgreSQL for the session, a fresh database per test.

The server is the embedded one (the same code `careline serve` uses), or the
server named by CARELINE_DATABASE_URL (its user needs CREATEDB). Migrations are
applied once to a template database; each test gets a copy made with
`CREATE DATABASE … TEMPLATE`, so tests can use many connections, race, and
commit for real, and still never see each other's rows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from dispatch.config import Config, load_config
from dispatch.database import connect, create_pool
from dispatch.migrate import apply_migrations
from dispatch.pgserver import EmbeddedPostgres
from dispatch.runtime import Runtime
from dispatch.service import Service
from telephony.simulator import AmiPeer
from tests.ami_peer import SECRET, USERNAME
from tests.helpers import with_database

# The console tests' browser fixture and its screenshot-on-failure hook.
pytest_plugins = ["tests.browser"]

TEMPLATE = f"careline_template_{os.getpid()}"


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    external = os.environ.get("CARELINE_DATABASE_URL")
    if external:
        yield external
        return
    # Not under pytest's basetemp: a second pytest run on the machine rotates old basetemps
    # away, and with them a live server's data directory and socket.
    folder = Path(tempfile.mkdtemp(prefix="careline-test-pg-"))
    server = EmbeddedPostgres(
        folder / "data", settings={"fsync": "off", "max_connections": "300", "full_page_writes": "off"}
    )
    dsn = asyncio.run(server.start())
    try:
        yield dsn
    finally:
        asyncio.run(server.stop())
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def template_dsn(pg_admin_dsn: str) -> Iterator[str]:
    async def create() -> None:
        conn = await asyncpg.connect(pg_admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
            await conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
        finally:
            await conn.close()
        conn = await connect(with_database(pg_admin_dsn, TEMPLATE))
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(pg_admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(create())
    yield with_database(pg_admin_dsn, TEMPLATE)
    asyncio.run(drop())


@pytest.fixture
async def db_dsn(pg_admin_dsn: str, template_dsn: str) -> AsyncIterator[str]:
    """A database of its own for this test, migrated, empty."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(pg_admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    finally:
        await conn.close()
    yield with_database(pg_admin_dsn, name)
    conn = await asyncpg.connect(pg_admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def config(db_dsn: str, tmp_path: Path) -> Config:
    """The repo's config.toml, pointed at this test's database and any free port."""
    base = load_config(environ={})
    # Every listening port is "any free one": tests run beside each other and beside a real serve.
    return dataclasses.replace(
        base,
        server=dataclasses.replace(base.server, port=0),
        alarms=dataclasses.replace(base.alarms, dc09_port=0),
        database=dataclasses.replace(base.database, url=db_dsn, pool_min=1, pool_max=5),
    )


@pytest.fixture
async def pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(db_dsn, min_size=1, max_size=5)
    yield p
    await p.close()


@pytest.fixture
def runtime(config: Config, pool: asyncpg.Pool) -> Runtime:
    return Runtime(config=config, pool=pool)


@pytest.fixture
async def service(config: Config) -> AsyncIterator[Service]:
    """The real service (database component + HTTP on a free port) for this test's database."""
    svc = Service(config)
    await svc.start()
    yield svc
    await svc.stop()


@pytest.fixture
async def peer() -> AsyncIterator[AmiPeer]:
    """A real TCP AMI peer (telephony/simulator.py) that takes the tests' log-in; each test scripts it."""
    peer = AmiPeer(username=USERNAME, secret=SECRET)
    await peer.start()
    yield peer
    await peer.stop()
