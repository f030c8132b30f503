"""Console sessions and log-ins: server-side sessions in PostgreSQL, and the log-in rate limit.

The cookie holds 256 random bits; the table holds only their SHA-256 (as for API
tokens), so reading the table opens nobody's console. A session ends at
`console.session_hours` after log-in or at log-out, whichever is first.

A refused log-in is a row in `login_failures`; `console.login_failures_allowed`
refusals of one user name from one address within `console.login_window_seconds`
and the next try is refused before the password is checked. Rows rather than
memory, so that restarting the service does not give an attacker a fresh count.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from dispatch.config import ConsoleConfig
from dispatch.database import Conn
from dispatch.users import Role, User, password_matches


@dataclass(frozen=True)
class Session:
    id: int
    user: User
    csrf_token: str
    expires_at: dt.datetime


@dataclass(frozen=True)
class NewSession:
    """A session just made: `token` goes into the cookie and is never stored."""

    session: Session
    token: str


class LoginRefused(Exception):
    """A log-in that did not open a session; `throttled` when the rate limit refused it."""

    def __init__(self, throttled: bool) -> None:
        super().__init__("too many refused log-ins" if throttled else "wrong user name or password")
        self.throttled = throttled


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


_SESSION_FOR_TOKEN = """
SELECT s.id, s.csrf_token, s.expires_at, u.id AS user_id, u.username, u.display_name, u.role
FROM console_sessions s JOIN users u ON u.id = s.user_id
WHERE s.token_sha256 = $1 AND s.ended_at IS NULL AND s.expires_at > $2 AND u.active
"""


async def session_for_token(conn: Conn, token: str, now: dt.datetime) -> Session | None:
    if not token or len(token) > 200:
        return None
    row = await conn.fetchrow(_SESSION_FOR_TOKEN, _digest(token), now)
    if row is None:
        return None
    user = User(
        id=row["user_id"], username=row["username"], display_name=row["display_name"], role=Role(row["role"])
    )
    return Session(id=row["id"], user=user, csrf_token=row["csrf_token"], expires_at=row["expires_at"])


async def _recent_failures(conn: Conn, username: str, ip: str, since: dt.datetime) -> int:
    count = await conn.fetchval(
        "SELECT count(*) FROM login_failures WHERE username = $1 AND ip = $2 AND failed_at > $3",
        username,
        ip,
        since,
    )
    return int(count)


async def log_in(
    conn: Conn,
    config: ConsoleConfig,
    username: str,
    password: str,
    *,
    ip: str,
    user_agent: str,
    now: dt.datetime,
) -> NewSession:
    """Check the rate limit, then the password; open a session or raise LoginRefused."""
    username = username.strip()[:64]
    since = now - dt.timedelta(seconds=config.login_window_seconds)
    # Failures older than the window count for nothing; the table stays as small as the attacks.
    await conn.execute("DELETE FROM login_failures WHERE failed_at < $1", since)
    if await _recent_failures(conn, username, ip, since) >= config.login_failures_allowed:
        # Written too, so that hammering a locked pair keeps it locked instead of waiting it out.
        await conn.execute(
            "INSERT INTO login_failures (username, ip, failed_at) VALUES ($1, $2, $3)", username, ip, now
        )
        raise LoginRefused(throttled=True)
    row = await conn.fetchrow(
        "SELECT id, username, display_name, role, password_hash FROM users WHERE username = $1 AND active",
        username,
    )
    # argon2 takes tens of milliseconds of CPU on purpose: off the event loop, so calls and
    # alarms are not held up by someone typing a password.
    matches = row is not None and await asyncio.to_thread(password_matches, row["password_hash"], password)
    if row is None or not matches:
        await conn.execute(
            "INSERT INTO login_failures (username, ip, failed_at) VALUES ($1, $2, $3)", username, ip, now
        )
        raise LoginRefused(throttled=False)
    await conn.execute("DELETE FROM login_failures WHERE username = $1 AND ip = $2", username, ip)
    user = User(
        id=row["id"], username=row["username"], display_name=row["display_name"], role=Role(row["role"])
    )
    token = secrets.token_urlsafe(32)
    csrf_token = secrets.token_urlsafe(32)
    expires = now + dt.timedelta(hours=config.session_hours)
    session_id = await conn.fetchval(
        """INSERT INTO console_sessions (token_sha256, user_id, csrf_token, created_at, expires_at, ip,
                                         user_agent)
           VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id""",
        _digest(token),
        user.id,
        csrf_token,
        now,
        expires,
        ip,
        user_agent[:300],
    )
    return NewSession(Session(int(session_id), user, csrf_token, expires), token)


async def log_out(conn: Conn, session_id: int, now: dt.datetime) -> None:
    await conn.execute(
        "UPDATE console_sessions SET ended_at = $2 WHERE id = $1 AND ended_at IS NULL", session_id, now
    )
