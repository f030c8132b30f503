"""Subsidy programmes (政府购买服务): who pays for an eligible resident's services, and how much a month."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from dispatch.database import Conn
from dispatch.validation import clean


@dataclass(frozen=True)
class SubsidyProgramme:
    code: str
    name: str
    monthly_allowance_fen: int
    coverage_percent: int


def _programme(row: asyncpg.Record) -> SubsidyProgramme:
    return SubsidyProgramme(
        code=row["code"],
        name=row["name"],
        monthly_allowance_fen=row["monthly_allowance_fen"],
        coverage_percent=row["coverage_percent"],
    )


async def list_subsidy_programmes(conn: Conn) -> list[SubsidyProgramme]:
    rows = await conn.fetch(
        "SELECT code, name, monthly_allowance_fen, coverage_percent FROM subsidy_programmes ORDER BY code"
    )
    return [_programme(r) for r in rows]


async def find_subsidy_programme(conn: Conn, ref: str) -> SubsidyProgramme | None:
    """By code (case ignored) or by its full name, as a spreadsheet may give either."""
    row = await conn.fetchrow(
        """SELECT code, name, monthly_allowance_fen, coverage_percent FROM subsidy_programmes
           WHERE lower(code) = lower($1) OR name = $1
           ORDER BY lower(code) = lower($1) DESC LIMIT 1""",
        clean(ref),
    )
    return _programme(row) if row else None


async def ensure_subsidy_programme(
    conn: Conn, code: str, name: str, monthly_allowance_fen: int, coverage_percent: int = 100
) -> SubsidyProgramme:
    row = await conn.fetchrow(
        """INSERT INTO subsidy_programmes (code, name, monthly_allowance_fen, coverage_percent)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name,
               monthly_allowance_fen = EXCLUDED.monthly_allowance_fen,
               coverage_percent = EXCLUDED.coverage_percent
           RETURNING code, name, monthly_allowance_fen, coverage_percent""",
        code,
        name,
        monthly_allowance_fen,
        coverage_percent,
    )
    assert row is not None
    return _programme(row)
