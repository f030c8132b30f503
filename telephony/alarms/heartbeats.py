"""Silent devices: one maintenance notice (and a repair request) per silence, found by a sweep.

Every message a device sends moves its `last_seen_at`; a trigger (migration 0006)
keeps `silent_after` = last seen (or installed) + two heartbeat intervals and
clears `silence_noticed_at` when the device is heard again. `sweep_silent_devices`
does the work for a given `now` (tests pass one); the `HeartbeatSweep` component
only decides when, with APScheduler's AsyncIOScheduler as the trigger: its job
wakes our own task, which owns the work, so a stop cancels exactly what we started.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import Counter, Gauge

from dispatch.components import Health
from dispatch.database import Conn
from dispatch.events import DomainEvent
from dispatch.notices import Severity, raise_notice
from dispatch.repairs import request_repair
from dispatch.runtime import Runtime
from dispatch.tasks import cancel_and_wait
from telephony.alarms.intake import DATABASE_DOWN

log = logging.getLogger(__name__)

BATCH = 500

CLAIM_SILENT = """
SELECT id, serial, resident_id, last_seen_at, heartbeat_interval_s, silent_after FROM devices
WHERE status = 'active' AND silence_noticed_at IS NULL AND silent_after <= $1
ORDER BY silent_after, id
LIMIT $2
FOR UPDATE SKIP LOCKED
"""


async def sweep_silent_devices(conn: Conn, now: dt.datetime, *, batch: int = BATCH) -> list[DomainEvent]:
    """Raise a notice for each active device silent for two intervals, once per silence.

    Runs in the caller's transaction (one batch of at most `batch` devices); the caller
    publishes the events after its commit and calls again while a full batch came back.
    """
    rows = await conn.fetch(CLAIM_SILENT, now, batch)
    events = []
    for row in rows:
        await conn.execute("UPDATE devices SET silence_noticed_at = $2 WHERE id = $1", row["id"], now)
        last = row["last_seen_at"]
        heard = last.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if last else "never"
        events.append(
            await raise_notice(
                conn,
                kind="device.silent",
                severity=Severity.WARNING,
                text=(
                    f"设备 {row['serial']} 已超过两个心跳周期未上报（最后上报：{heard}），请安排检修。"
                    f" / Device {row['serial']} missed two heartbeats (last heard {heard});"
                    " maintenance needed."
                ),
                subject_type="device",
                subject_id=row["id"],
                data={
                    "audience": "maintenance",
                    "resident_id": row["resident_id"],
                    "heartbeat_interval_s": row["heartbeat_interval_s"],
                },
                at=now,
            )
        )
        # the notice tells the floor; the repair order sends someone (dispatch/repairs.py)
        await request_repair(conn, row["id"], "silent", now)
    return events


@dataclass(frozen=True)
class SilentDevice:
    id: int
    serial: str
    kind: str
    resident_id: int | None
    last_seen_at: dt.datetime | None
    heartbeat_interval_s: int
    silent_after: dt.datetime
    battery_percent: int | None
    noticed_at: dt.datetime | None


async def silent_devices(
    conn: Conn, now: dt.datetime, *, limit: int = 50, offset: int = 0
) -> tuple[list[SilentDevice], int]:
    """Active devices past their silence deadline, longest silent first."""
    rows = await conn.fetch(
        """SELECT id, serial, kind, resident_id, last_seen_at, heartbeat_interval_s, silent_after,
                  battery_percent, silence_noticed_at AS noticed_at
           FROM devices WHERE status = 'active' AND silent_after <= $1
           ORDER BY silent_after, id LIMIT $2 OFFSET $3""",
        now,
        limit,
        offset,
    )
    total = await conn.fetchval(
        "SELECT count(*) FROM devices WHERE status = 'active' AND silent_after <= $1", now
    )
    return [SilentDevice(**dict(r.items())) for r in rows], int(total)


class HeartbeatSweep:
    """A component: sweeps every `alarms.sweep_interval_seconds`, and once at start."""

    name = "heartbeats"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.interval = runtime.config.alarms.sweep_interval_seconds
        self._scheduler: AsyncIOScheduler | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.last_run: dt.datetime | None = None
        self.last_error: str | None = None
        self._noticed = Counter(
            "careline_devices_silence_noticed", "Silent-device notices raised", registry=runtime.metrics
        )
        self._silent = Gauge(
            "careline_devices_silent", "Active devices past two heartbeats", registry=runtime.metrics
        )

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="heartbeat-sweep")
        self._scheduler = AsyncIOScheduler(timezone=dt.UTC)
        self._scheduler.add_job(
            self._tick, "interval", seconds=self.interval, max_instances=1, coalesce=True, id="sweep"
        )
        self._scheduler.start()
        self._wake.set()

    async def _tick(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.sweep_once()
            except DATABASE_DOWN as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("heartbeat sweep: database unavailable (%s)", exc)
            except Exception as exc:
                # The sweep outlives any one bad round: a dead sweep is every silent device missed.
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("heartbeat sweep failed; carrying on")

    async def sweep_once(self) -> int:
        now = self.runtime.clock()
        noticed = 0
        while True:
            async with self.runtime.pool.acquire() as conn, conn.transaction():
                events = await sweep_silent_devices(conn, now)
            await self.runtime.bus.publish(*events)
            noticed += len(events)
            if len(events) < BATCH:
                break
        self._noticed.inc(noticed)
        total = await self.runtime.pool.fetchval(
            "SELECT count(*) FROM devices WHERE status = 'active' AND silent_after <= $1", now
        )
        self._silent.set(int(total))
        self.last_run, self.last_error = now, None
        return noticed

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def health(self) -> Health:
        ok = self._task is not None and not self._task.done() and self.last_error is None
        return Health(
            ok,
            {
                "status": "ok" if ok else "degraded",
                "every_seconds": self.interval,
                "last_run": self.last_run.isoformat() if self.last_run else None,
                "error": self.last_error,
            },
        )
