"""`GET /api/v1/reports/settlement?month=YYYY-MM`: the month's settlement workbook, for download.

Read-only: settling (confirmed → settled) is `careline report settlement --settle`, run by an
administrator once a month; the console only downloads what it would write.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from dispatch.api.auth import current_user
from dispatch.api.errors import bad_request
from dispatch.api.keys import RUNTIME
from dispatch.api.openapi import error_response
from dispatch.settlement import (
    XLSX_TYPE,
    BadMonth,
    build_workbook,
    parse_month,
    settlement_rows,
    workbook_bytes,
)
from dispatch.users import Role

routes = web.RouteTableDef()


@routes.get("/api/v1/reports/settlement")
async def settlement_workbook(request: web.Request) -> web.Response:
    current_user(request, Role.SUPERVISOR)
    runtime = request.app[RUNTIME]
    raw = request.query.get("month")
    if not raw:
        raise bad_request("month", "is required, e.g. 2026-11")
    try:
        month = parse_month(raw)
    except BadMonth as exc:
        raise bad_request("month", str(exc)) from None
    async with runtime.pool.acquire() as conn:
        rows = await settlement_rows(conn, month)

    def render() -> bytes:
        return workbook_bytes(build_workbook(rows, month, tz=runtime.tz, generated_at=runtime.clock()))

    # openpyxl is CPU work: off the loop, so the floor keeps moving while a month is written
    body = await asyncio.to_thread(render)
    return web.Response(
        body=body,
        content_type=XLSX_TYPE,
        headers={"Content-Disposition": f'attachment; filename="settlement-{month:%Y-%m}.xlsx"'},
    )


OPENAPI: dict[str, Any] = {
    "/api/v1/reports/settlement": {
        "get": {
            "summary": "The month's settlement workbook (.xlsx): per provider, per subsidy programme and "
            "every order's evidence; confirmed and settled orders of that Asia/Shanghai month of service",
            "parameters": [
                {
                    "name": "month",
                    "in": "query",
                    "required": True,
                    "description": "YYYY-MM",
                    "schema": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"},
                }
            ],
            "responses": {
                "200": {
                    "description": "the workbook",
                    "content": {XLSX_TYPE: {"schema": {"type": "string", "format": "binary"}}},
                },
                "400": error_response("no month, or a bad one"),
                "401": error_response("no or bad token"),
                "403": error_response("needs the supervisor role"),
            },
        }
    }
}
