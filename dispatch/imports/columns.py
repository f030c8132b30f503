"""Column headers: Chinese as the templates have them, English aliases, and how a header row is matched.

Headers are compared loosely — full-width folded, case, blanks, `_`, `-`, `*`
and any parenthesised note ignored — so `服务能力（并发单数）`, `服务能力` and
`Capacity (jobs)` all mean the same column.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from dispatch.imports.report import ImportFileError
from dispatch.imports.tables import Cell
from dispatch.validation import clean

_NOTE = re.compile(r"\(.*?\)")
_IGNORED = re.compile(r"[\s_\-*:]")
# A title line ("呼和浩特市居家老人信息表") may sit above the header; look this far down for it.
HEADER_SEARCH_ROWS = 10


def header_key(text: str) -> str:
    return _IGNORED.sub("", _NOTE.sub("", clean(text))).casefold()


@dataclass(frozen=True)
class Column:
    field: str
    label: str  # the header the template uses
    aliases: tuple[str, ...] = ()
    required: bool = False

    @property
    def keys(self) -> set[str]:
        return {header_key(self.label), *(header_key(a) for a in self.aliases)}


@dataclass(frozen=True)
class Header:
    """Where each known column is in this file, and how the file spells it."""

    row: int
    index: dict[str, int]
    written: dict[str, str]
    labels: dict[str, str]
    ignored: tuple[str, ...]

    def has(self, field: str) -> bool:
        return field in self.index

    def name(self, field: str) -> str:
        """The column to blame for `field` in a report: as written in the file, else the template's header."""
        return self.written.get(field) or self.labels.get(field, field)


def find_header(
    rows: Sequence[tuple[int, tuple[Cell, ...]]], columns: Sequence[Column], source: str
) -> Header:
    """The first row naming all required columns; ImportFileError naming what is missing otherwise."""
    by_key = {key: column for column in columns for key in column.keys}
    labels = {column.field: column.label for column in columns}
    required = [c for c in columns if c.required]
    best: tuple[int, list[Column]] | None = None
    for number, cells in rows[:HEADER_SEARCH_ROWS]:
        texts = [str(c).strip() if c is not None else "" for c in cells]
        found = {by_key[header_key(t)].field for t in texts if header_key(t) in by_key}
        missing = [c for c in required if c.field not in found]
        if not missing:
            return _header(number, texts, by_key, labels, source)
        if found and (best is None or len(missing) < len(best[1])):
            best = (number, missing)
    if best is None:
        wanted = ", ".join(c.label for c in required)
        raise ImportFileError(
            f"{source}: no header row found; the first row must name the columns ({wanted}, …)"
        )
    number, missing = best
    names = ", ".join(f"{c.label} ({c.aliases[0]})" if c.aliases else c.label for c in missing)
    raise ImportFileError(f"{source}: row {number} lacks the required column(s) {names}")


def _header(
    number: int, texts: list[str], by_key: dict[str, Column], labels: dict[str, str], source: str
) -> Header:
    index: dict[str, int] = {}
    written: dict[str, str] = {}
    ignored: list[str] = []
    for position, text in enumerate(texts):
        column = by_key.get(header_key(text))
        if column is None:
            if text:
                ignored.append(text)
            continue
        if column.field in index:
            raise ImportFileError(
                f"{source}: columns {written[column.field]!r} and {text!r} both mean {column.label}; keep one"
            )
        index[column.field] = position
        written[column.field] = text
    return Header(number, index, written, labels, tuple(ignored))


def cell_text(cell: Cell) -> str:
    """A cell as the text a person sees: 13800138000 not 13800138000.0, dates as ISO dates."""
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return "是" if cell else "否"
    if isinstance(cell, float) and cell.is_integer() and abs(cell) < 2**53:
        return str(int(cell))
    if isinstance(cell, dt.datetime) and cell.time() == dt.time():
        return cell.date().isoformat()
    if isinstance(cell, dt.date | dt.time):
        return cell.isoformat()
    return clean(str(cell))


@dataclass(frozen=True)
class Cells:
    """One data row, read by field name."""

    row: int
    values: tuple[Cell, ...]
    header: Header

    def raw(self, field: str) -> Cell:
        position = self.header.index.get(field)
        if position is None or position >= len(self.values):
            return None
        return self.values[position]

    def text(self, field: str) -> str:
        return cell_text(self.raw(field))

    def is_blank(self) -> bool:
        return all(cell_text(value) == "" for value in self.values)
