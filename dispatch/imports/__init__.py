"""Importing residents and providers from the spreadsheets civil-affairs offices keep (`careline import`).

Each row is checked and saved in its own savepoint: a bad row is reported
(row number, column, reason) and changes nothing, the good rows are saved.
Rows are committed in chunks, so an interrupted import keeps what it had
done, and running the same file again changes nothing. The columns, accepted
values and formats are in README.md beside this file, with templates.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Protocol, TypeVar

import asyncpg
from tqdm import tqdm

from dispatch.database import Conn
from dispatch.imports.columns import Cells, Column, Header, find_header
from dispatch.imports.providers import ProviderRows
from dispatch.imports.report import ImportFileError, ImportReport, Outcome, RowError
from dispatch.imports.residents import ResidentRows
from dispatch.imports.tables import Row, Table, open_table
from dispatch.runtime import Runtime
from dispatch.validation import InvalidInput

__all__ = ["ImportFileError", "ImportReport", "RowError", "import_file"]

T = TypeVar("T")
# Rows per transaction: big enough that commits are not the cost, small enough to lose little.
CHUNK_ROWS = 500


class RowKind(Protocol[T]):
    kind: str
    columns: tuple[Column, ...]
    key_field: str

    def column_of(self, field: str) -> str: ...

    async def build(self, cells: Cells) -> T: ...

    def key(self, record: T) -> str: ...

    async def save(self, record: T) -> tuple[bool, bool]: ...


async def import_file(
    runtime: Runtime, kind: str, path: Path | str, *, progress: bool = False
) -> ImportReport:
    """Import a .xlsx or .csv file of `kind` ("residents" or "providers").

    ImportFileError when the file as a whole cannot be read; bad rows are in the report's `errors`.
    """
    if kind not in ("residents", "providers"):
        raise ImportFileError(f"cannot import {kind!r}: expected residents or providers")
    table = await asyncio.to_thread(open_table, Path(path))
    try:
        async with runtime.pool.acquire() as conn:
            if kind == "residents":
                return await _import(ResidentRows(conn, runtime.phones), conn, table, progress)
            return await _import(ProviderRows(conn, runtime.phones), conn, table, progress)
    finally:
        table.close()


async def _import(rows: RowKind[T], conn: Conn, table: Table, progress: bool) -> ImportReport:
    first = await asyncio.to_thread(table.take, CHUNK_ROWS)
    header = find_header(first, rows.columns, table.name)
    report = ImportReport(rows.kind, table.name, ignored_columns=header.ignored)
    seen: dict[str, int] = {}
    chunk: list[Row] = [row for row in first if row[0] > header.row]
    total = max(table.rows_hint - header.row, 0) if table.rows_hint is not None else None
    with tqdm(total=total, disable=not progress, file=sys.stderr, unit=" rows", desc=rows.kind) as bar:
        while chunk:
            async with conn.transaction():
                for number, values in chunk:
                    await _import_row(rows, conn, Cells(number, values, header), report, seen)
            bar.update(len(chunk))
            chunk = await asyncio.to_thread(table.take, CHUNK_ROWS)
    return report


async def _import_row(
    rows: RowKind[T], conn: Conn, cells: Cells, report: ImportReport, seen: dict[str, int]
) -> None:
    if cells.is_blank():
        return
    try:
        record = await rows.build(cells)
        key = rows.key(record)
        if key in seen:
            raise InvalidInput.one(rows.key_field, f"the same value is already on row {seen[key]}; keep one")
        async with conn.transaction():
            created, changed = await rows.save(record)
    except InvalidInput as exc:
        _reject(report, cells.header, rows, cells.row, [(e.field, e.reason) for e in exc.errors])
        return
    except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError) as exc:
        # Not expected once a row has been checked; say which rule, not the values (they may be personal).
        rule = getattr(exc, "constraint_name", None) or type(exc).__name__
        _reject(
            report, cells.header, rows, cells.row, [(rows.key_field, f"refused by the database ({rule})")]
        )
        return
    seen[key] = cells.row
    report.count(Outcome.CREATED if created else Outcome.UPDATED if changed else Outcome.UNCHANGED)


def _reject(
    report: ImportReport, header: Header, rows: RowKind[T], row: int, problems: list[tuple[str, str]]
) -> None:
    for field, reason in problems:
        report.errors.append(RowError(row, header.name(rows.column_of(field)), reason))
