"""Calls as the console and the API read them."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from dispatch.database import Conn
from telephony.caller_id import Party
from telephony.calls import Direction, Disposition


@dataclass(frozen=True)
class CallRecord:
    id: int
    server: str
    linkedid: str
    direction: Direction
    caller_number: str | None
    called_number: str | None
    did: str | None
    emergency: bool
    party: Party | None
    resident_id: int | None
    device_id: int | None
    provider_id: int | None
    team_id: int | None
    alert_id: int | None
    attempt_id: int | None
    queue: str | None
    operator: str | None
    arrived_at: dt.datetime
    answered_at: dt.datetime | None
    ended_at: dt.datetime | None
    wait_seconds: int | None
    talk_seconds: int | None
    disposition: Disposition | None
    hangup_cause: int | None
    resynced: bool
    context_id: uuid.UUID
    # why a long wait was so long, as the operator said (dispatch/service_levels.py)
    wait_reason: str | None = None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> CallRecord:
        values = {name: row[name] for name in cls.__dataclass_fields__}
        values["direction"] = Direction(values["direction"])
        values["party"] = Party(values["party"]) if values["party"] else None
        values["disposition"] = Disposition(values["disposition"]) if values["disposition"] else None
        return cls(**values)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            data[name] = value.isoformat() if isinstance(value, dt.datetime) else value
        data["context_id"] = str(self.context_id)
        return data


COLUMNS = """id, server, linkedid, direction, caller_number, called_number, did, emergency, party,
    resident_id, device_id, provider_id, team_id, alert_id, attempt_id, queue, operator, arrived_at,
    answered_at, ended_at, wait_seconds, talk_seconds, disposition, hangup_cause, resynced, context_id,
    wait_reason"""


async def get_call(conn: Conn, call_id: int) -> CallRecord | None:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM calls WHERE id = $1", call_id)
    return CallRecord.from_row(row) if row else None


_FILTER = """
WHERE ($1::timestamptz IS NULL OR arrived_at >= $1)
  AND ($2::bigint IS NULL OR resident_id = $2)
  AND ($3::text IS NULL OR disposition = $3)
  AND ($4::text IS NULL OR server = $4)
"""


async def list_calls(
    conn: Conn,
    *,
    since: dt.datetime | None = None,
    resident_id: int | None = None,
    disposition: Disposition | None = None,
    server: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[CallRecord], int]:
    """Newest first, and how many match in all."""
    args = (since, resident_id, disposition.value if disposition else None, server)
    rows = await conn.fetch(
        f"""SELECT {COLUMNS}, count(*) OVER () AS total FROM calls {_FILTER}
            ORDER BY arrived_at DESC, id DESC LIMIT $5 OFFSET $6""",
        *args,
        limit,
        offset,
    )
    if rows:
        total = int(rows[0]["total"])
    else:
        # past the last page the window count has no row to ride on
        total = int(await conn.fetchval(f"SELECT count(*) FROM calls {_FILTER}", *args)) if offset else 0
    return [CallRecord.from_row(r) for r in rows], total
