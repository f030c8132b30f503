"""Reading spreadsheets as rows: `.xlsx` (openpyxl, streamed) and `.csv` (UTF-8, UTF-16 or GB18030).

Rows are numbered as the spreadsheet shows them (the first line is row 1) so
that a report's "row 7" is the row a person scrolls to. Cells keep the type
the file gave them: an 18-digit ID number that Excel turned into a float must
be recognised as damaged, not silently read as a different number.
These functions block; the importer runs them in a worker thread.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import io
import itertools
import zipfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.workbook.workbook import Workbook

from dispatch.imports.report import ImportFileError

Cell = str | int | float | bool | dt.datetime | dt.date | dt.time | dt.timedelta | None
Row = tuple[int, tuple[Cell, ...]]

# Formats people try that we cannot read, with what to do instead.
_OTHER_FORMATS = {
    ".xls": "an old Excel .xls file; open it and save as .xlsx (or .csv)",
    ".et": "a WPS .et file; save it as .xlsx (or .csv)",
    ".ods": "an OpenDocument spreadsheet; save it as .xlsx (or .csv)",
    ".numbers": "a Numbers file; export it as .xlsx (or .csv)",
    ".txt": "a text file; save the sheet as .csv or .xlsx",
}


class Table:
    """Rows of the first worksheet (or the CSV), read on demand; `close()` releases the file."""

    def __init__(
        self, name: str, rows: Iterator[Row], rows_hint: int | None, workbook: Workbook | None = None
    ):
        self.name = name
        self.rows_hint = rows_hint
        self._rows = rows
        self._workbook = workbook

    def take(self, n: int) -> list[Row]:
        try:
            return list(itertools.islice(self._rows, n))
        except csv.Error as exc:
            raise ImportFileError(f"{self.name}: not a well-formed CSV file ({exc})") from None

    def close(self) -> None:
        if self._workbook is not None:
            self._workbook.close()
            self._workbook = None


def open_table(path: Path) -> Table:
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        return _open_xlsx(path)
    if suffix == ".csv":
        return _open_csv(path)
    if suffix in _OTHER_FORMATS:
        raise ImportFileError(f"{path.name}: this is {_OTHER_FORMATS[suffix]}")
    raise ImportFileError(f"{path.name}: expected a .xlsx or .csv file")


def _open_xlsx(path: Path) -> Table:
    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except FileNotFoundError:
        raise ImportFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError):
        raise ImportFileError(
            f"{path.name}: not a readable .xlsx file (damaged, or another format renamed?)"
        ) from None
    sheet = workbook.worksheets[0]
    max_row = sheet.max_row if isinstance(sheet.max_row, int) else None
    rows = (
        (n, tuple(_cell(v) for v in values)) for n, values in enumerate(sheet.iter_rows(values_only=True), 1)
    )
    return Table(path.name, rows, max_row, workbook)


def _cell(value: object) -> Cell:
    if value is None or isinstance(value, str | int | float | dt.datetime | dt.date | dt.time | dt.timedelta):
        return value
    if isinstance(value, Decimal):
        return float(value)
    # rich text and formulas (with no cached value) as the text they show
    return str(value)


def _decode(path: Path, data: bytes) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Excel's "Unicode text" export
        return data.decode("utf-16")
    if b"\x00" in data:
        raise ImportFileError(f"{path.name}: binary data, not a CSV text file (an .xlsx renamed to .csv?)")
    with contextlib.suppress(UnicodeDecodeError):
        return data.decode("utf-8-sig")
    try:
        # What Excel and WPS on Chinese Windows write when saving "CSV (逗号分隔)".
        return data.decode("gb18030")
    except UnicodeDecodeError:
        raise ImportFileError(
            f"{path.name}: the text is neither UTF-8 nor GB18030; save it as CSV UTF-8"
        ) from None


def _open_csv(path: Path) -> Table:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImportFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    text = _decode(path, data)
    first_line = text.split("\n", 1)[0]
    delimiter = max(",\t;", key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: Iterator[Row] = ((n, tuple(values)) for n, values in enumerate(reader, start=1))
    return Table(path.name, rows, text.count("\n"))
