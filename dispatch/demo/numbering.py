"""Numbers that must be valid and unique across the whole demo floor.

Phone numbers are matched on arrival (caller ID → resident, SMS sender →
provider), so two demo people sharing a number would make the demo lie. One
`Numbering` hands out every number of a build from the build's own random
source, remembering what it gave.
"""

from __future__ import annotations

import datetime as dt
import random
from itertools import accumulate

from dispatch.id_numbers import check_character

# Mobile prefixes an older generation in Inner Mongolia mostly holds: 13x first.
_MOBILE_PREFIXES: tuple[tuple[str, int], ...] = (
    *((f"13{d}", 6) for d in range(10)),
    *((p, 3) for p in ("150", "151", "152", "153", "155", "156", "157", "158", "159")),
    *((f"18{d}", 2) for d in range(10)),
    *((p, 1) for p in ("173", "176", "177", "199")),
)
_PREFIXES = tuple(p for p, _ in _MOBILE_PREFIXES)
_PREFIX_ODDS = tuple(accumulate(w for _, w in _MOBILE_PREFIXES))

# GB 32100-2015: the 31 characters of a unified social credit code, and the
# weights of its check character; GB 11714 for the embedded organisation code.
_CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)

# Registration authority and kind: 91 a company (市场监管), 52 a private
# non-enterprise unit registered with civil affairs (民办非企业单位), as many
# care centres are.
COMPANY = "91"
SOCIAL_ORGANISATION = "52"


def credit_check_character(first17: str) -> str:
    total = sum(_CREDIT_ALPHABET.index(ch) * w for ch, w in zip(first17, _CREDIT_WEIGHTS, strict=True))
    return _CREDIT_ALPHABET[(31 - total % 31) % 31]


def _organisation_code(body: str) -> str:
    remainder = 11 - sum(int(ch) * w for ch, w in zip(body, _ORG_WEIGHTS, strict=True)) % 11
    return body + {10: "X", 11: "0"}.get(remainder, str(remainder))


class Numbering:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._phones: set[str] = set()
        self._ids: set[str] = set()
        self._licences: set[str] = set()

    def _unique_phone(self, make: str) -> str:
        while True:
            if make == "mobile":
                prefix = self._rng.choices(_PREFIXES, cum_weights=_PREFIX_ODDS)[0]
                number = f"+86{prefix}{self._rng.randrange(10**8):08d}"
            else:
                # Hohhot's area code 0471 serves the counties too; local numbers are 7 digits.
                number = f"+86471{self._rng.randint(2, 8)}{self._rng.randrange(10**6):06d}"
            if number not in self._phones:
                self._phones.add(number)
                return number

    def mobile(self) -> str:
        return self._unique_phone("mobile")

    def landline(self) -> str:
        return self._unique_phone("landline")

    def id_number(self, area_code: str, birth: dt.date, sex: str) -> str:
        """A resident ID whose birth date and sex digit agree with the person."""
        parity = 1 if sex == "M" else 0
        while True:
            sequence = self._rng.randrange(0, 500) * 2 + parity
            first17 = f"{area_code}{birth:%Y%m%d}{sequence:03d}"
            value = first17 + check_character(first17)
            if value not in self._ids:
                self._ids.add(value)
                return value

    def credit_code(self, kind: str, area_code: str) -> str:
        """An 18-character 统一社会信用代码 with both of its check characters right."""
        while True:
            organisation = _organisation_code(f"{self._rng.randrange(10**8):08d}")
            first17 = f"{kind}{area_code}{organisation}"
            value = first17 + credit_check_character(first17)
            if value not in self._licences:
                self._licences.add(value)
                return value
