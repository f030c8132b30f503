"""The asyncpg pool: PostgreSQL is the only state Careline keeps."""

from __future__ import annotations

import json
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# What a query function takes: a plain connection or one borrowed from the pool.
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


# Parameters as compact JSON: PostgreSQL keeps jsonb its own way, so the spaces json.dumps puts
# after every separator are only bytes to write and parse (a batch of call rows is thousands).
# Nothing Careline stores refers to itself, so the check for cycles is skipped too.
_encode_json = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=_encode_json, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=_encode_json, decoder=json.loads, schema="pg_catalog")


async def create_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    timezone: str = "Asia/Shanghai",
    connect_timeout: float = 10.0,
) -> asyncpg.Pool:
    """A pool whose sessions cut days in the hotline's time zone and decode JSON."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=connect_timeout,
        init=_init_connection,
        server_settings={"timezone": timezone, "application_name": "careline"},
    )
    return pool


async def connect(dsn: str, *, timezone: str = "Asia/Shanghai") -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(
        dsn, server_settings={"timezone": timezone, "application_name": "careline"}
    )
    await _init_connection(conn)
    return conn


def record_dict(record: Any) -> dict[str, Any]:
    return dict(record.items())
