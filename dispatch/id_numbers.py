"""Chinese resident identity numbers (居民身份证号码, GB 11643-1999).

18 characters: a 6-digit area code, the birth date as YYYYMMDD, a 3-digit
sequence whose parity is the sex (odd: male), and an ISO 7064 MOD 11-2 check
character (0-9 or X).
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


class IdNumberError(ValueError):
    """Not a valid resident identity number; the message says which part is wrong."""


@dataclass(frozen=True)
class IdNumber:
    value: str
    birth_date: dt.date
    sex: str  # 'M' or 'F'

    @property
    def masked(self) -> str:
        return mask_id_number(self.value)


def check_character(first17: str) -> str:
    total = sum(int(ch) * w for ch, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def parse_id_number(raw: str) -> IdNumber:
    value = unicodedata.normalize("NFKC", raw or "").strip().upper().replace(" ", "")
    if len(value) != 18:
        raise IdNumberError(f"an ID number has 18 characters, this has {len(value)}")
    if not value[:17].isdigit() or not (value[17].isdigit() or value[17] == "X"):
        raise IdNumberError("an ID number is 17 digits and a final digit or X")
    try:
        birth = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise IdNumberError(f"the birth date {value[6:14]} in the ID number is not a date") from None
    if birth.year < 1880 or birth > dt.date.today():
        raise IdNumberError(f"the birth date {birth.isoformat()} in the ID number is out of range")
    expected = check_character(value[:17])
    if value[17] != expected:
        raise IdNumberError("the check digit of the ID number does not match (a digit mistyped?)")
    return IdNumber(value=value, birth_date=birth, sex="M" if int(value[16]) % 2 else "F")


def mask_id_number(value: str) -> str:
    """150102********123X: the area and the last four, never the birth date."""
    if len(value) < 10:
        return "*" * len(value)
    return value[:6] + "*" * (len(value) - 10) + value[-4:]
