"""The admin page that reads the resident access log (written by `dispatch/resident_access.py`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from aiohttp import web

from dispatch.api.keys import RUNTIME
from dispatch.console.pages import page, render
from dispatch.database import Conn
from dispatch.users import Role

routes = web.RouteTableDef()
PAGE_SIZE = 100


@dataclass(frozen=True)
class Access:
    at: dt.datetime
    username: str
    role: str
    resident_id: int
    resident_name: str
    via: str
    ip: str
    user_agent: str


async def recent_accesses(
    conn: Conn, *, resident_id: int | None = None, username: str | None = None, limit: int, offset: int
) -> list[Access]:
    rows = await conn.fetch(
        """SELECT a.at, a.username, a.role, a.resident_id, r.name AS resident_name, a.via, a.ip, a.user_agent
           FROM resident_access_log a JOIN residents r ON r.id = a.resident_id
           WHERE ($1::bigint IS NULL OR a.resident_id = $1) AND ($2::text IS NULL OR a.username = $2)
           ORDER BY a.at DESC, a.id DESC LIMIT $3 OFFSET $4""",
        resident_id,
        username,
        limit,
        offset,
    )
    return [Access(**dict(r.items())) for r in rows]


def _int_query(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name, "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 18 else None


@routes.get("/console/admin/access-log")
@page(Role.ADMIN)
async def access_log_page(request: web.Request) -> web.StreamResponse:
    resident_id = _int_query(request, "resident")
    username = request.query.get("user") or None
    offset = _int_query(request, "offset") or 0
    async with request.app[RUNTIME].pool.acquire() as conn:
        rows = await recent_accesses(
            conn, resident_id=resident_id, username=username, limit=PAGE_SIZE, offset=offset
        )
    return render(
        request,
        "access_log.html",
        {
            "rows": rows,
            "resident": resident_id or "",
            "username": username or "",
            "offset": offset,
            "page_size": PAGE_SIZE,
        },
    )
