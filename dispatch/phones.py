"""Phone numbers: every caller ID form we meet becomes one E.164 string.

Asterisk hands us `04716912345`, a provider types `(0471)6912345`, a form has
`+86 138 0013 8000`, an old spreadsheet has full-width digits. Lookups compare
E.164 only, so normalising once at every edge is what makes a caller known.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberType

_NOISE = re.compile(r"[\s\-().·/\\]")


class PhoneNumberError(ValueError):
    """Text that is not a phone number we can dial."""


@dataclass(frozen=True)
class PhoneBook:
    """How numbers are read here: the region, and the area code of a bare local number."""

    region: str = "CN"
    home_area_code: str = "0471"

    def normalise(self, raw: str) -> str:
        """E.164 for `raw`, or PhoneNumberError saying what is wrong with it."""
        text = unicodedata.normalize("NFKC", raw or "").strip()
        compact = _NOISE.sub("", text)
        if not compact:
            raise PhoneNumberError("empty phone number")
        if compact.startswith("00"):
            compact = "+" + compact[2:]
        elif compact.startswith("86") and len(compact) in (12, 13) and not compact.startswith("+"):
            # 8613800138000 / 864716912345: a country code without its plus
            compact = "+" + compact
        if not re.fullmatch(r"\+?\d+", compact):
            raise PhoneNumberError(f"not a phone number: {mask_phone(text)!s}")
        if not compact.startswith(("+", "0", "1")) and 7 <= len(compact) <= 8:
            compact = self.home_area_code + compact
        try:
            parsed = phonenumbers.parse(compact, self.region)
        except phonenumbers.NumberParseException as exc:
            raise PhoneNumberError(f"not a phone number: {mask_phone(text)}") from exc
        if not phonenumbers.is_valid_number(parsed):
            raise PhoneNumberError(f"not a valid number: {mask_phone(text)}")
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)

    def try_normalise(self, raw: str | None) -> str | None:
        try:
            return self.normalise(raw or "")
        except PhoneNumberError:
            return None

    def kind(self, e164: str) -> str:
        """'mobile' or 'landline' (what a resident's phone row records)."""
        number_type = phonenumbers.number_type(phonenumbers.parse(e164))
        return "mobile" if number_type == PhoneNumberType.MOBILE else "landline"

    def national(self, e164: str) -> str:
        """The form an operator dials and reads: 13800138000, 0471 691 2345."""
        parsed = phonenumbers.parse(e164)
        if parsed.country_code == 86 and phonenumbers.number_type(parsed) == PhoneNumberType.MOBILE:
            return str(parsed.national_number)
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)


def mask_phone(text: str) -> str:
    """Keep the first three and last two digits: enough to tell numbers apart in a log."""
    digits = [i for i, ch in enumerate(text) if ch.isdigit()]
    if len(digits) <= 5:
        return "*" * len(text)
    hidden = set(digits[3:-2])
    return "".join("*" if i in hidden else ch for i, ch in enumerate(text))
