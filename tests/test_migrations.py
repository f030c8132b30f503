"""The migration runner: in order, each once, each in a transaction, safe when two start at once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from dispatch.database import connect
from dispatch.migrate import MIGRATIONS_DIR, MigrationError, apply_migrations, discover
from tests.helpers import with_database


@pytest.fixture
async def empty_dsn(pg_admin_dsn: str) -> AsyncIterator[str]:
    name = f"e_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(pg_admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    yield with_database(pg_admin_dsn, name)
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


async def test_fresh_database_gets_every_migration_then_nothing(empty_dsn: str) -> None:
    conn = await connect(empty_dsn)
    try:
        expected = [m.version for m in discover()]
        assert await apply_migrations(conn) == expected
        assert await apply_migrations(conn) == []
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        assert {"residents", "providers", "emergency_teams", "events", "users", "devices"} <= tables
        recorded = await conn.fetchval("SELECT count(*) FROM schema_migrations")
        assert recorded == len(expected)
    finally:
        await conn.close()


async def test_two_processes_at_once_apply_each_migration_once(empty_dsn: str) -> None:
    conns = [await connect(empty_dsn) for _ in range(3)]
    try:
        results = await asyncio.gather(*(apply_migrations(c) for c in conns))
        applied = sorted(v for result in results for v in result)
        assert applied == [m.version for m in discover()]
    finally:
        for c in conns:
            await c.close()


def write_migrations(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


async def test_failing_migration_leaves_nothing_behind(empty_dsn: str, tmp_path: Path) -> None:
    folder = write_migrations(
        tmp_path / "m",
        {"0001_ok.sql": "CREATE TABLE a (x int);", "0002_bad.sql": "CREATE TABLE b (x int); SELECT 1/0;"},
    )
    conn = await connect(empty_dsn)
    try:
        with pytest.raises(MigrationError, match="0002_bad failed"):
            await apply_migrations(conn, folder)
        assert await conn.fetchval("SELECT to_regclass('a') IS NOT NULL")
        assert await conn.fetchval("SELECT to_regclass('b') IS NULL")
        assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == 1
    finally:
        await conn.close()


async def test_edited_migration_is_refused(empty_dsn: str, tmp_path: Path) -> None:
    folder = write_migrations(tmp_path / "m", {"0001_one.sql": "CREATE TABLE a (x int);"})
    conn = await connect(empty_dsn)
    try:
        await apply_migrations(conn, folder)
        (folder / "0001_one.sql").write_text("CREATE TABLE a (x bigint);")
        with pytest.raises(MigrationError, match="edited after it was applied"):
            await apply_migrations(conn, folder)
    finally:
        await conn.close()


def test_badly_named_file_is_refused(tmp_path: Path) -> None:
    folder = write_migrations(tmp_path / "m", {"1_x.sql": "SELECT 1;"})
    with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
        discover(folder)


def test_repository_migrations_are_numbered_without_gaps() -> None:
    versions = [m.version for m in discover(MIGRATIONS_DIR)]
    assert versions == list(range(1, len(versions) + 1))


async def test_event_log_is_append_only(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO events (subject_type, subject_id, kind, actor) VALUES ('resident', 1, 'created', 'test')"
    )
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("UPDATE events SET actor = 'someone else'")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("DELETE FROM events")
    assert await pool.fetchval("SELECT actor FROM events") == "test"


async def test_chinese_names_are_trigram_indexable(pool: asyncpg.Pool) -> None:
    """Without Unicode character classes pg_trgm makes no trigrams of 王秀兰, and every name search scans."""
    trigrams = await pool.fetchval("SELECT show_trgm('王秀兰')")
    assert len(trigrams) == 4
