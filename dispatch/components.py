"""Components of the service, started in order and stopped in reverse by `Service`."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from dispatch.config import Config, redacted_database_url
from dispatch.database import connect, create_pool
from dispatch.migrate import apply_migrations
from dispatch.pgserver import EmbeddedPostgres

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: dict[str, Any]


class Component(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def health(self) -> Health: ...


class Database:
    """The embedded server (when no URL is configured), migrations, and the pool."""

    name = "database"

    def __init__(self, config: Config, *, stop_adopted_server: bool = True) -> None:
        self.config = config
        # `serve` inherits a server orphaned by a killed predecessor and stops it at the end;
        # a one-shot command (`careline user add`) beside a running `serve` must leave it running.
        self.stop_adopted_server = stop_adopted_server
        self.embedded: EmbeddedPostgres | None = None
        self._pool: asyncpg.Pool | None = None
        self.dsn = config.database.url

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the database component has not started")
        return self._pool

    async def start(self) -> None:
        cfg = self.config.database
        if not self.dsn:
            self.embedded = EmbeddedPostgres(self.config.embedded_pgdata())
            self.dsn = await self.embedded.start()
            log.info("embedded PostgreSQL ready in %s", self.embedded.pgdata)
        else:
            log.info("using PostgreSQL at %s", redacted_database_url(self.dsn))
        conn = await connect(self.dsn, timezone=self.config.locale.timezone)
        try:
            applied = await apply_migrations(conn)
            if applied:
                log.info("applied migrations %s", applied)
        finally:
            await conn.close()
        self._pool = await create_pool(
            self.dsn,
            min_size=cfg.pool_min,
            max_size=max(cfg.pool_min, cfg.pool_max),
            timezone=self.config.locale.timezone,
            connect_timeout=cfg.connect_timeout_seconds,
        )

    async def stop(self) -> None:
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), timeout=10)
            except TimeoutError:
                log.warning("database pool did not close in time; terminating connections")
                self._pool.terminate()
            self._pool = None
        if self.embedded is not None:
            if self.embedded.adopted and not self.stop_adopted_server:
                log.info("embedded PostgreSQL left running for the process that uses it")
            else:
                await self.embedded.stop()
                log.info("embedded PostgreSQL stopped")

    async def health(self) -> Health:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(2):
                await self.pool.fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError, RuntimeError) as exc:
            return Health(False, {"status": "down", "error": type(exc).__name__ + ": " + str(exc)[:200]})
        latency = round((time.perf_counter() - started) * 1000, 2)
        return Health(True, {"status": "ok", "latency_ms": latency, "embedded": self.embedded is not None})
