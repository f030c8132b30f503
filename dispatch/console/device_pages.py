"""Devices on the console: every device, the silent ones first, with last seen, battery and missed heartbeats.

Silent means what the heartbeat sweep and `GET /api/v1/devices/silent` mean
(`telephony.alarms.heartbeats`): an active device past its `silent_after`,
which a trigger keeps at last seen (or installed) plus two heartbeat intervals.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from aiohttp import web

from dispatch.api.keys import RUNTIME
from dispatch.console.pages import page, render
from dispatch.database import Conn
from dispatch.devices import DeviceKind, DeviceStatus

routes = web.RouteTableDef()

PAGE_SIZE = 100
LOW_BATTERY = 20

# The silent ones first (longest silent first), then the rest by kind and serial.
DEVICES = """
SELECT d.id, d.serial, d.kind, d.status, d.resident_id, r.name AS resident_name, d.last_seen_at,
       d.installed_at, d.heartbeat_interval_s, d.battery_percent, d.false_alarms,
       coalesce(d.status = 'active' AND d.silent_after <= $1, false) AS silent, d.silence_noticed_at
FROM devices d LEFT JOIN residents r ON r.id = d.resident_id
WHERE ($2::text IS NULL OR d.serial ILIKE '%' || $2 || '%')
  AND (NOT $3 OR (d.status = 'active' AND d.silent_after <= $1))
ORDER BY coalesce(d.status = 'active' AND d.silent_after <= $1, false) DESC,
         CASE WHEN d.status = 'active' AND d.silent_after <= $1 THEN d.silent_after END,
         d.status, d.kind, d.serial, d.id
LIMIT $4 OFFSET $5
"""

COUNTS = """
SELECT count(*) AS total, count(*) FILTER (WHERE status = 'active' AND silent_after <= $1) AS silent
FROM devices
"""


@dataclass(frozen=True)
class DeviceRow:
    id: int
    serial: str
    kind: DeviceKind
    status: DeviceStatus
    resident_id: int | None
    resident_name: str | None
    last_seen_at: dt.datetime | None
    heartbeat_interval_s: int
    battery_percent: int | None
    false_alarms: int
    silent: bool
    missed_heartbeats: int
    noticed_at: dt.datetime | None


def missed_heartbeats(last: dt.datetime, interval_s: int, now: dt.datetime) -> int:
    """Whole heartbeat intervals gone by since the device was last heard (or installed)."""
    return max(0, int((now - last).total_seconds() // interval_s)) if interval_s > 0 else 0


async def device_rows(
    conn: Conn, now: dt.datetime, *, serial: str | None, silent_only: bool, limit: int, offset: int
) -> list[DeviceRow]:
    rows = await conn.fetch(DEVICES, now, serial, silent_only, limit, offset)
    return [
        DeviceRow(
            id=r["id"],
            serial=r["serial"],
            kind=DeviceKind(r["kind"]),
            status=DeviceStatus(r["status"]),
            resident_id=r["resident_id"],
            resident_name=r["resident_name"],
            last_seen_at=r["last_seen_at"],
            heartbeat_interval_s=r["heartbeat_interval_s"],
            battery_percent=r["battery_percent"],
            false_alarms=r["false_alarms"],
            silent=r["silent"],
            missed_heartbeats=missed_heartbeats(
                r["last_seen_at"] or r["installed_at"], r["heartbeat_interval_s"], now
            ),
            noticed_at=r["silence_noticed_at"],
        )
        for r in rows
    ]


def _offset(request: web.Request) -> int:
    raw = request.query.get("offset", "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else 0


@routes.get("/console/devices")
@page()
async def devices_page(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    now = runtime.clock()
    serial = request.query.get("serial", "").strip()[:64]
    silent_only = request.query.get("silent") == "1"
    offset = _offset(request)
    async with runtime.pool.acquire() as conn:
        rows = await device_rows(
            conn,
            now,
            serial=serial.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") or None,
            silent_only=silent_only,
            limit=PAGE_SIZE,
            offset=offset,
        )
        counts = await conn.fetchrow(COUNTS, now)
    assert counts is not None
    return render(
        request,
        "devices.html",
        {
            "rows": rows,
            "total": counts["total"],
            "silent_count": counts["silent"],
            "serial": serial,
            "silent_only": silent_only,
            "offset": offset,
            "page_size": PAGE_SIZE,
            "low_battery": LOW_BATTERY,
            "more": len(rows) == PAGE_SIZE,
        },
    )
