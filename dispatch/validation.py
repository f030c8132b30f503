"""Checking registry input field by field, so that every mistake in a record is reported at once.

An import row or a form can be wrong in several places; telling the person
only the first one makes them fix a file five times. A `Checker` runs each
field's parser, keeps the value or the reason it failed, and raises
`InvalidInput` with all the reasons at the end.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import TypeVar

from dispatch.phones import PhoneBook

T = TypeVar("T")


@dataclass(frozen=True)
class FieldError:
    field: str
    reason: str


class InvalidInput(ValueError):
    """One or more fields of a record are wrong; `errors` names each field and why."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(f"{e.field}: {e.reason}" for e in self.errors))

    @classmethod
    def one(cls, field: str, reason: str) -> InvalidInput:
        return cls([FieldError(field, reason)])


class Checker:
    """Collects field errors; `done()` raises them together."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def check(self, field: str, parse: Callable[[], T]) -> T | None:
        """`parse()`'s value, or None after recording its ValueError against `field`."""
        try:
            return parse()
        except InvalidInput as exc:
            self.errors.extend(exc.errors)
        except ValueError as exc:
            self.errors.append(FieldError(field, str(exc)))
        return None

    def fail(self, field: str, reason: str) -> None:
        self.errors.append(FieldError(field, reason))

    def done(self) -> None:
        if self.errors:
            raise InvalidInput(self.errors)


def clean(value: str | None) -> str:
    """Full-width letters and digits folded, outer blanks dropped: how people's typing is compared."""
    return unicodedata.normalize("NFKC", value or "").strip()


def required(value: str | None, what: str) -> str:
    text = clean(value)
    if not text:
        raise ValueError(f"{what} is required")
    return text


def optional_float(value: str | float | None, low: float, high: float) -> float | None:
    if value is None or (isinstance(value, str) and not clean(value)):
        return None
    try:
        number = float(clean(value) if isinstance(value, str) else value)
    except ValueError:
        raise ValueError(f"expected a number, got {value!r}") from None
    if not low <= number <= high:
        raise ValueError(f"expected a number from {low:g} to {high:g}, got {number:g}")
    return number


def parse_int(value: str | int | None, low: int, high: int, *, default: int | None = None) -> int:
    if value is None or (isinstance(value, str) and not clean(value)):
        if default is None:
            raise ValueError("a whole number is required")
        return default
    text = clean(value) if isinstance(value, str) else value
    try:
        number = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise ValueError(f"expected a whole number from {low} to {high}, got {number}")
    return number


def parse_yuan(value: str | None) -> int | None:
    """Money as written by people (80, 80.5, ¥80, 80元) in fen; empty is None."""
    text = clean(value).removeprefix("¥").removeprefix("￥").removesuffix("元").strip()
    if not text:
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"expected an amount in yuan such as 80 or 80.50, got {value!r}") from None
    fen = amount * 100
    if not amount.is_finite() or fen != fen.to_integral_value() or amount < 0:
        raise ValueError(f"expected an amount in yuan with at most 2 decimals, got {value!r}")
    return int(fen)


def normalise_phones(book: PhoneBook, values: Sequence[str]) -> tuple[str, ...]:
    """E.164 for each non-empty value, first occurrence kept; errors name the bad number masked."""
    seen: dict[str, None] = {}
    for value in values:
        if clean(value):
            seen.setdefault(book.normalise(value), None)
    return tuple(seen)


def split_list(value: str | None) -> Iterator[str]:
    """Items of a list cell: separated by ; ； , ， 、 or line breaks, blanks dropped."""
    text = clean(value)
    for sep in (";", ",", "、", "\n"):
        text = text.replace(sep, "\x00")
    return (part.strip() for part in text.split("\x00") if part.strip())


E = TypeVar("E", bound=StrEnum)


def parse_choice(
    value: str | None, choices: type[E], *, labels: Mapping[str, E] | None = None, default: E | None = None
) -> E:
    """One of an enum's values, or one of its labels (独居 for alone), case and width ignored."""
    text = clean(value)
    if not text:
        if default is None:
            raise ValueError(f"one of {', '.join(choices)} is required")
        return default
    for member in choices:
        if text.casefold() == member.value.casefold():
            return member
    if labels:
        for label, member in labels.items():
            if text.casefold() == label.casefold():
                return member
    accepted = [*choices, *(labels or {})]
    raise ValueError(f"expected one of {', '.join(accepted)}, got {text!r}")
