"""Operator notices: things a person on the floor must see and acknowledge.

Any part of the system raises one in its own transaction (`raise_notice`), so
a notice exists exactly when the change that caused it committed; the returned
event is published after the commit for the console to show at once.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import asyncpg

from dispatch.database import Conn
from dispatch.events import DomainEvent, append_event


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class Notice:
    id: int
    kind: str
    severity: Severity
    text: str
    subject_type: str | None
    subject_id: int | None
    context_id: uuid.UUID | None
    created_at: dt.datetime
    acknowledged_by: int | None
    acknowledged_at: dt.datetime | None
    data: dict[str, Any] = field(default_factory=dict)


_COLUMNS = """id, kind, severity, text, subject_type, subject_id, context_id, created_at,
              acknowledged_by, acknowledged_at, data"""


def _notice(row: asyncpg.Record) -> Notice:
    values = dict(row.items())
    values["severity"] = Severity(values["severity"])
    return Notice(**values)


async def raise_notice(
    conn: Conn,
    *,
    kind: str,
    severity: Severity,
    text: str,
    subject_type: str | None = None,
    subject_id: int | None = None,
    context_id: uuid.UUID | None = None,
    data: dict[str, Any] | None = None,
    actor: str = "system",
    at: dt.datetime | None = None,
) -> DomainEvent:
    """Store a notice (in the caller's transaction); publish the returned event after the commit."""
    created = at or dt.datetime.now(dt.UTC)
    notice_id: int = await conn.fetchval(
        """INSERT INTO notices (kind, severity, text, subject_type, subject_id, context_id, data, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id""",
        kind,
        severity.value,
        text,
        subject_type,
        subject_id,
        context_id,
        data or {},
        created,
    )
    return await append_event(
        conn,
        subject_type="notice",
        subject_id=notice_id,
        kind="notice.raised",
        actor=actor,
        reason=text,
        context_id=context_id,
        data={
            "notice_kind": kind,
            "severity": severity.value,
            "about": {"type": subject_type, "id": subject_id},
        },
        at=created,
    )


async def open_notices(conn: Conn, *, limit: int = 100) -> list[Notice]:
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM notices WHERE acknowledged_at IS NULL
            ORDER BY created_at DESC, id DESC LIMIT $1""",
        limit,
    )
    return [_notice(r) for r in rows]


async def notices_about(conn: Conn, subject_type: str, subject_id: int) -> list[Notice]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM notices WHERE subject_type = $1 AND subject_id = $2 ORDER BY id",
        subject_type,
        subject_id,
    )
    return [_notice(r) for r in rows]


async def acknowledge_notice(
    conn: Conn, notice_id: int, user_id: int, *, actor: str, at: dt.datetime | None = None
) -> DomainEvent | None:
    """The event to publish after the commit when this call acknowledged it (written in the caller's
    transaction: who saw it, when); None when it was already acknowledged or does not exist. Every
    floor drops the notice on that event, not only the one whose operator clicked."""
    when = at or dt.datetime.now(dt.UTC)
    row = await conn.fetchrow(
        """UPDATE notices SET acknowledged_by = $2, acknowledged_at = $3
           WHERE id = $1 AND acknowledged_at IS NULL RETURNING kind, context_id""",
        notice_id,
        user_id,
        when,
    )
    if row is None:
        return None
    return await append_event(
        conn,
        subject_type="notice",
        subject_id=notice_id,
        kind="notice.acknowledged",
        actor=actor,
        context_id=row["context_id"],
        data={"notice_kind": row["kind"]},
        at=when,
    )


async def find_notices(
    conn: Conn,
    *,
    include_acknowledged: bool = False,
    subject_type: str | None = None,
    subject_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Notice], int]:
    """Open notices first, newest first; with the total for paging."""
    where = """($1 OR acknowledged_at IS NULL) AND ($2::text IS NULL OR subject_type = $2)
               AND ($3::bigint IS NULL OR subject_id = $3)"""
    args = (include_acknowledged, subject_type, subject_id)
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM notices WHERE {where}
            ORDER BY (acknowledged_at IS NULL) DESC, created_at DESC, id DESC LIMIT $4 OFFSET $5""",
        *args,
        limit,
        offset,
    )
    total = await conn.fetchval(f"SELECT count(*) FROM notices WHERE {where}", *args)
    return [_notice(r) for r in rows], int(total)
