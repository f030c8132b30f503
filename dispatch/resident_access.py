"""Who opened which resident's record, when and from where: one row per opening.

Written by every handler that shows one resident's record — the console's card
(`via="card"`) and page (`via="page"`), the API's resident card (`via="api"`) —
before it answers. Admins read it at /console/admin/access-log.
"""

from __future__ import annotations

from aiohttp import web

from dispatch.api.keys import RUNTIME
from dispatch.database import Conn
from dispatch.users import User


def client_ip(request: web.Request) -> str:
    """The peer address (behind a reverse proxy: the proxy's, unless it is configured to pass it)."""
    return request.remote or ""


async def log_resident_access(
    conn: Conn, request: web.Request, user: User, resident_id: int, *, via: str
) -> None:
    await conn.execute(
        """INSERT INTO resident_access_log (at, user_id, username, role, resident_id, via, ip, user_agent)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        request.app[RUNTIME].clock(),
        user.id,
        user.username,
        user.role.value,
        resident_id,
        via,
        client_ip(request),
        request.headers.get("User-Agent", "")[:300],
    )
