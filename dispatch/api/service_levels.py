"""`/api/v1/service-levels`: answer times, offers taken in time, visits on time; the long waits
still waiting for a reason, and `POST /api/v1/calls/{id}/wait-reason` to give one.

The same figures (today so far and the last hour) are Prometheus gauges, worked out when
`/metrics` is scraped (`ON_SCRAPE`): one indexed query over today's rows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import weakref
from typing import Any

import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge

from dispatch.api.auth import current_user
from dispatch.api.bodies import json_object, text_field
from dispatch.api.errors import ApiError, bad_request, not_found, ok
from dispatch.api.keys import RUNTIME
from dispatch.api.openapi import error_response
from dispatch.api.paging import DEFAULT_LIMIT, MAX_LIMIT, day_param, day_parameter
from dispatch.runtime import Runtime
from dispatch.service_levels import (
    MAX_REASON,
    CallNotFound,
    Level,
    WaitReasonError,
    day_bounds,
    record_wait_reason,
    service_levels,
    unexplained_waits,
)

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

MAX_ID = 2**63 - 1
# A scrape never waits longer than this for the figures; the gauges keep their last values.
SCRAPE_TIMEOUT_SECONDS = 2.0


def _today(runtime: Runtime) -> dt.date:
    return runtime.clock().astimezone(runtime.tz).date()


async def live_levels(runtime: Runtime, day: dt.date) -> tuple[list[Level], list[Level] | None, dt.datetime]:
    """The day's levels (so far, when it is today) and, for today, the last hour's."""
    now = runtime.clock()
    start, end = day_bounds(day, runtime.tz)
    settings = runtime.config.service_levels
    async with runtime.pool.acquire() as conn:
        levels = await service_levels(conn, start=start, end=min(end, now), now=now, settings=settings)
        hour = None
        if start <= now < end:
            hour = await service_levels(
                conn, start=now - dt.timedelta(hours=1), end=now, now=now, settings=settings
            )
    return levels, hour, now


@routes.get("/api/v1/service-levels")
async def levels_of_day(request: web.Request) -> web.Response:
    current_user(request)
    runtime = request.app[RUNTIME]
    today = _today(runtime)
    day = day_param(request.query, today)
    levels, hour, now = await live_levels(runtime, day)
    settings = runtime.config.service_levels
    start, end = day_bounds(day, runtime.tz)
    async with runtime.pool.acquire() as conn:
        _, waits = await unexplained_waits(
            conn, long_wait_seconds=settings.long_wait_seconds, start=start, end=end, limit=1
        )
    return ok(
        {
            "day": day.isoformat(),
            "timezone": runtime.config.locale.timezone,
            "live": hour is not None,
            "as_of": now.isoformat(),
            "levels": [level.as_json() for level in levels],
            "last_hour": None if hour is None else [level.as_json() for level in hour],
            "long_wait_seconds": settings.long_wait_seconds,
            "long_waits_without_reason": waits,
        }
    )


def _limit(raw: str | None) -> int:
    if not raw:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_LIMIT):
        raise bad_request("limit", f"expected a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def _before(raw: str | None) -> int | None:
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19 and 1 <= int(raw) <= MAX_ID):
        raise bad_request("before", "expected a call id (next_before of the previous page)")
    return int(raw)


@routes.get("/api/v1/service-levels/long-waits")
async def long_waits(request: web.Request) -> web.Response:
    current_user(request)
    runtime = request.app[RUNTIME]
    limit = _limit(request.query.get("limit"))
    before = _before(request.query.get("before"))
    start = end = None
    if request.query.get("day"):
        start, end = day_bounds(day_param(request.query, _today(runtime)), runtime.tz)
    seconds = runtime.config.service_levels.long_wait_seconds
    async with runtime.pool.acquire() as conn:
        waits, total = await unexplained_waits(
            conn, long_wait_seconds=seconds, start=start, end=end, before=before, limit=limit
        )
    return ok(
        {
            "items": [w.as_json() for w in waits],
            "total": total,
            "next_before": waits[-1].call_id if len(waits) == limit else None,
            "long_wait_seconds": seconds,
        }
    )


@routes.post(r"/api/v1/calls/{id:\d+}/wait-reason")
async def wait_reason(request: web.Request) -> web.Response:
    user = current_user(request)
    runtime = request.app[RUNTIME]
    raw = request.match_info["id"]
    if len(raw) > 18:
        raise not_found("call")
    body = await json_object(request, empty_ok=False)
    reason = text_field(body, "reason", required=True, max_length=MAX_REASON)
    if not reason.isprintable():
        raise bad_request("reason", "control characters are not allowed")
    async with runtime.pool.acquire() as conn, conn.transaction():
        try:
            wait, event = await record_wait_reason(
                conn,
                int(raw),
                reason=reason,
                actor=f"user:{user.username}",
                at=runtime.clock(),
                long_wait_seconds=runtime.config.service_levels.long_wait_seconds,
            )
        except CallNotFound:
            raise not_found("call") from None
        except WaitReasonError as exc:
            raise ApiError(409, exc.code, str(exc)) from None
    await runtime.bus.publish(event)
    return ok({"call": wait.as_json()})


# -- Prometheus -------------------------------------------------------------------------------


class LevelGauges:
    """The service-level series of one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.percent = Gauge(
            "careline_service_level_percent",
            "Share meeting the measure (today so far, or the last hour); NaN while nothing counts",
            ["measure", "period"],
            registry=registry,
        )
        self.count = Gauge(
            "careline_service_level_count",
            "How many counted for the measure (of) and how many met it (met)",
            ["measure", "period", "of"],
            registry=registry,
        )
        self.target = Gauge(
            "careline_service_level_target_percent", "The measure's target", ["measure"], registry=registry
        )

    def set(self, period: str, levels: list[Level]) -> None:
        for level in levels:
            self.target.labels(level.measure).set(level.target_percent)
            self.count.labels(level.measure, period, "met").set(level.count)
            self.count.labels(level.measure, period, "all").set(level.of)
            percent = level.percent
            # NaN while nothing counts (early in the day): no share, rather than a false 0 or 100
            self.percent.labels(level.measure, period).set(math.nan if percent is None else percent)


_GAUGES: weakref.WeakKeyDictionary[CollectorRegistry, LevelGauges] = weakref.WeakKeyDictionary()


async def refresh_gauges(app: web.Application) -> None:
    runtime = app[RUNTIME]
    gauges = _GAUGES.get(runtime.metrics)
    if gauges is None:
        gauges = _GAUGES[runtime.metrics] = LevelGauges(runtime.metrics)
    try:
        async with asyncio.timeout(SCRAPE_TIMEOUT_SECONDS):
            levels, hour, _ = await live_levels(runtime, _today(runtime))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("service levels not refreshed for /metrics: %s", type(exc).__name__)
        return
    gauges.set("today", levels)
    if hour is not None:
        gauges.set("last_hour", hour)


ON_SCRAPE = refresh_gauges

# -- OpenAPI ----------------------------------------------------------------------------------

_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}

SCHEMAS: dict[str, Any] = {
    "ServiceLevel": {
        "type": "object",
        "required": ["measure", "count", "of", "percent", "target_percent", "met"],
        "properties": {
            "measure": {
                "type": "string",
                "description": "calls_answered_within_60s, calls_answered_within_180s (the configured "
                "seconds), offers_accepted_in_time, visits_on_time",
            },
            "count": {"type": "integer", "description": "how many met the measure"},
            "of": {"type": "integer", "description": "how many counted"},
            "percent": {"type": ["number", "null"], "description": "null while nothing counts"},
            "target_percent": {"type": "number"},
            "met": {"type": ["boolean", "null"]},
        },
    },
    "ServiceLevels": {
        "type": "object",
        "required": ["day", "timezone", "live", "levels", "last_hour", "long_waits_without_reason"],
        "properties": {
            "day": {"type": "string", "format": "date"},
            "timezone": {"type": "string"},
            "live": {"type": "boolean", "description": "the day is today: figures so far, and the last hour"},
            "as_of": {"type": "string", "format": "date-time"},
            "levels": {"type": "array", "items": {"$ref": "#/components/schemas/ServiceLevel"}},
            "last_hour": {
                "type": ["array", "null"],
                "items": {"$ref": "#/components/schemas/ServiceLevel"},
            },
            "long_wait_seconds": {"type": "integer"},
            "long_waits_without_reason": {"type": "integer"},
        },
    },
    "LongWait": {
        "type": "object",
        "required": ["call_id", "arrived_at", "wait_seconds"],
        "properties": {
            "call_id": {"type": "integer"},
            "arrived_at": {"type": "string", "format": "date-time"},
            "answered_at": _NULLABLE_TIME,
            "ended_at": _NULLABLE_TIME,
            "wait_seconds": {"type": "integer"},
            "disposition": {"type": ["string", "null"]},
            "caller_number": {"type": ["string", "null"]},
            "resident_id": {"type": ["integer", "null"]},
            "alert_id": {"type": ["integer", "null"]},
            "queue": {"type": ["string", "null"]},
            "operator": {"type": ["string", "null"]},
            "wait_reason": {"type": ["string", "null"]},
            "wait_reason_by": {"type": ["string", "null"]},
            "wait_reason_at": _NULLABLE_TIME,
        },
    },
}

_UNAUTHORIZED = error_response("no or bad token")

OPENAPI: dict[str, Any] = {
    "/api/v1/service-levels": {
        "get": {
            "summary": "Service levels of a day (Asia/Shanghai): calls answered within 60 s and 180 s, "
            "offers accepted in time, visits on time; today: so far and the last hour",
            "parameters": [day_parameter("the local day (default today)")],
            "responses": {
                "200": {
                    "description": "the levels against their targets",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ServiceLevels"}}
                    },
                },
                "400": error_response("a bad day"),
                "401": _UNAUTHORIZED,
            },
        }
    },
    "/api/v1/service-levels/long-waits": {
        "get": {
            "summary": "Hotline calls that waited longer than long_wait_seconds and have no reason yet, "
            "newest first",
            "parameters": [
                day_parameter("only calls that arrived on this local day"),
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_LIMIT,
                        "default": DEFAULT_LIMIT,
                    },
                },
                {
                    "name": "before",
                    "in": "query",
                    "description": "call ids below this (next_before of the previous page)",
                    "schema": {"type": "integer", "minimum": 1},
                },
            ],
            "responses": {
                "200": {
                    "description": "one page",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["items", "total", "next_before"],
                                "properties": {
                                    "items": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/LongWait"},
                                    },
                                    "total": {"type": "integer"},
                                    "next_before": {"type": ["integer", "null"]},
                                    "long_wait_seconds": {"type": "integer"},
                                },
                            }
                        }
                    },
                },
                "400": error_response("a bad filter"),
                "401": _UNAUTHORIZED,
            },
        }
    },
    "/api/v1/calls/{id}/wait-reason": {
        "post": {
            "summary": "Say why a hotline call waited longer than long_wait_seconds (kept with the call, "
            "and on its timeline); a second reason replaces the first",
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["reason"],
                            "properties": {
                                "reason": {"type": "string", "minLength": 1, "maxLength": MAX_REASON}
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "the call with its reason",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"call": {"$ref": "#/components/schemas/LongWait"}},
                            }
                        }
                    },
                },
                "400": error_response("no reason, or a bad one"),
                "401": _UNAUTHORIZED,
                "404": error_response("no such call"),
                "409": error_response("the call did not wait long enough to need a reason"),
            },
        }
    },
}
