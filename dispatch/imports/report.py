"""What an import did: counts, and every rejected row with its spreadsheet row number, column and reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ImportFileError(Exception):
    """The file as a whole cannot be imported; the message is one line saying why and what to do."""


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class RowError:
    row: int  # as the spreadsheet shows it: the header is row 1
    column: str  # the header as written in the file
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}, {self.column}: {self.reason}"


@dataclass
class ImportReport:
    kind: str
    source: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    ignored_columns: tuple[str, ...] = ()

    @property
    def rejected(self) -> int:
        return len({e.row for e in self.errors})

    def count(self, outcome: Outcome) -> None:
        setattr(self, outcome.value, getattr(self, outcome.value) + 1)

    def describe(self) -> str:
        lines = [
            f"{self.kind} from {self.source}: {self.created} created, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.rejected} rejected"
        ]
        if self.ignored_columns:
            lines.append(f"ignored columns (not known): {', '.join(self.ignored_columns)}")
        lines.extend(f"  {error}" for error in self.errors)
        return "\n".join(lines)
