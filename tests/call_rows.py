"""Call rows for figure tests, in plain SQL: what the call recorder would have written."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

from dispatch.database import Conn

_serial = itertools.count(1)


async def call_row(
    conn: Conn,
    *,
    arrived: dt.datetime,
    wait: int | None,
    answered: bool = True,
    talk: int = 60,
    ended: bool = True,
    direction: str = "inbound",
    resident_id: int | None = None,
    caller: str | None = "+8613800138000",
    operator: str | None = "8001",
) -> int:
    """One call: answered after `wait` seconds (or abandoned then), ended after `talk` more seconds;
    `wait=None` with `ended=False` is a call still ringing."""
    answered_at = arrived + dt.timedelta(seconds=wait) if answered and wait is not None else None
    ended_at = None
    if ended and wait is not None:
        ended_at = (
            answered_at + dt.timedelta(seconds=talk) if answered_at else arrived + dt.timedelta(seconds=wait)
        )
    disposition = None if ended_at is None else "answered" if answered_at else "abandoned"
    return int(
        await conn.fetchval(
            """INSERT INTO calls (server, linkedid, direction, caller_number, called_number, did, party,
                   resident_id, queue, operator, arrived_at, answered_at, ended_at, wait_seconds,
                   talk_seconds, disposition, context_id)
               VALUES ('pbx1', $1, $2, $3, '12349', '12349', $4, $5, 'hotline', $6, $7, $8, $9, $10, $11,
                       $12, $13)
               RETURNING id""",
            f"1700000000.{next(_serial)}",
            direction,
            caller,
            "resident" if resident_id else "unknown",
            resident_id,
            operator if answered_at else None,
            arrived,
            answered_at,
            ended_at,
            wait if ended_at or answered_at else None,
            talk if answered_at and ended_at else None,
            disposition,
            uuid.uuid4(),
        )
    )
