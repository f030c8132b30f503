"""`GET /api/v1/figures/daily`: one day's operations figures (calls, alerts, orders, SMS)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dispatch.api.auth import current_user
from dispatch.api.errors import ok
from dispatch.api.keys import RUNTIME
from dispatch.api.openapi import error_response
from dispatch.api.paging import day_param, day_parameter
from dispatch.daily_figures import figures_of_day
from dispatch.orders import OrderState

routes = web.RouteTableDef()


@routes.get("/api/v1/figures/daily")
async def daily(request: web.Request) -> web.Response:
    current_user(request)
    runtime = request.app[RUNTIME]
    today = runtime.clock().astimezone(runtime.tz).date()
    day = day_param(request.query, today)
    async with runtime.pool.acquire() as conn:
        figures = await figures_of_day(
            conn, day, tz=runtime.tz, ack_deadline_seconds=runtime.config.alerts.ack_supervisor_seconds
        )
    return ok({**figures.as_json(), "timezone": runtime.config.locale.timezone, "live": day == today})


_COUNT = {"type": "integer", "minimum": 0}
_SECONDS = {"type": ["number", "null"]}


def _percentiles(*names: str) -> dict[str, Any]:
    return {"type": "object", "properties": {name: _SECONDS for name in names}}


SCHEMAS: dict[str, Any] = {
    "DailyFigures": {
        "type": "object",
        "required": ["day", "calls", "alerts", "orders", "sms"],
        "properties": {
            "day": {"type": "string", "format": "date"},
            "timezone": {"type": "string"},
            "live": {"type": "boolean", "description": "the day is today: figures so far"},
            "calls": {
                "type": "object",
                "properties": {
                    "total": _COUNT,
                    "inbound": _COUNT,
                    "outbound": _COUNT,
                    "answered": _COUNT,
                    "abandoned": _COUNT,
                    "not_connected": _COUNT,
                    "ringing": _COUNT,
                    "answer_seconds": _percentiles("p50", "p90", "max"),
                    "by_hour": {
                        "type": "array",
                        "description": "24 rows, local hours 0-23, inbound calls",
                        "items": {
                            "type": "object",
                            "properties": {
                                "hour": {"type": "integer"},
                                "total": _COUNT,
                                "answered": _COUNT,
                                "abandoned": _COUNT,
                            },
                        },
                    },
                },
            },
            "alerts": {
                "type": "object",
                "properties": {
                    "total": _COUNT,
                    "by_kind": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"kind": {"type": "string"}, "count": _COUNT},
                        },
                    },
                    "acknowledged_in_time": _COUNT,
                    "seconds_to_acknowledge": _percentiles("p50", "p90"),
                    "seconds_to_dispatch": _percentiles("p50", "p90"),
                    "seconds_to_on_scene": _percentiles("p50", "p90"),
                    "escalations": _COUNT,
                    "false_alarms": _COUNT,
                    "still_open": _COUNT,
                },
            },
            "orders": {
                "type": "object",
                "properties": {
                    "created": _COUNT,
                    "by_state": {
                        "type": "array",
                        "description": "every state, in lifecycle order, of the orders taken that day",
                        "items": {
                            "type": "object",
                            "properties": {
                                "state": {"type": "string", "enum": [s.value for s in OrderState]},
                                "count": _COUNT,
                            },
                        },
                    },
                },
            },
            "sms": {
                "type": "object",
                "properties": {
                    "sent": _COUNT,
                    "delivered": _COUNT,
                    "failed": _COUNT,
                    "pending": _COUNT,
                    "received": _COUNT,
                },
            },
        },
    }
}

OPENAPI: dict[str, Any] = {
    "/api/v1/figures/daily": {
        "get": {
            "summary": "One day's operations figures (Asia/Shanghai): calls and answer times (also per "
            "hour), alerts by kind and response times, orders by state, SMS sent and failed",
            "parameters": [day_parameter("the local day (default today)")],
            "responses": {
                "200": {
                    "description": "the figures",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/DailyFigures"}}
                    },
                },
                "400": error_response("a bad day"),
                "401": error_response("no or bad token"),
            },
        }
    }
}
