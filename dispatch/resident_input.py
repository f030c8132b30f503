"""A resident's record as people enter it (form, spreadsheet row), checked field by field.

`ResidentInput.build` takes text as typed and gives a normalised record or
`InvalidInput` naming every bad field, so an import can report all of a row's
mistakes at once and an upsert can compare the result with what is stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial

from dispatch.id_numbers import parse_id_number
from dispatch.phones import PhoneBook
from dispatch.validation import Checker, clean, optional_float, parse_choice, required


class Sex(StrEnum):
    MALE = "M"
    FEMALE = "F"


class LivingSituation(StrEnum):
    ALONE = "alone"
    EMPTY_NEST = "empty_nest"
    WITH_FAMILY = "with_family"


class Language(StrEnum):
    MANDARIN = "zh"
    MONGOLIAN = "mn"


class PhoneKind(StrEnum):
    MOBILE = "mobile"
    LANDLINE = "landline"


SEX_LABELS = {"男": Sex.MALE, "女": Sex.FEMALE, "male": Sex.MALE, "female": Sex.FEMALE}
LIVING_LABELS = {
    "独居": LivingSituation.ALONE,
    "空巢": LivingSituation.EMPTY_NEST,
    "与家人同住": LivingSituation.WITH_FAMILY,
    "与子女同住": LivingSituation.WITH_FAMILY,
    "与家人居住": LivingSituation.WITH_FAMILY,
    "同住": LivingSituation.WITH_FAMILY,
}
LANGUAGE_LABELS = {
    "汉语": Language.MANDARIN,
    "普通话": Language.MANDARIN,
    "中文": Language.MANDARIN,
    "蒙古语": Language.MONGOLIAN,
    "蒙语": Language.MONGOLIAN,
    "mongolian": Language.MONGOLIAN,
    "mandarin": Language.MANDARIN,
}
MAX_PHONES = 5
MAX_CONTACTS = 5


def age_on(birth_date: dt.date, day: dt.date) -> int:
    """Whole years lived on `day` (a 29 February birthday counts from 1 March in common years)."""
    before_birthday = (day.month, day.day) < (birth_date.month, birth_date.day)
    return day.year - birth_date.year - before_birthday


@dataclass(frozen=True)
class ResidentPhone:
    e164: str = field(repr=False)
    kind: PhoneKind


@dataclass(frozen=True)
class EmergencyContact:
    """A family member or neighbour, called in `position` order when the resident needs help."""

    position: int
    name: str
    relation: str
    phone_e164: str = field(repr=False)


@dataclass(frozen=True)
class ResidentInput:
    """A resident's record as someone enters it, already checked and normalised."""

    id_number: str = field(repr=False)
    name: str
    sex: Sex
    birth_date: dt.date
    phones: tuple[ResidentPhone, ...] = ()
    address: str = ""
    community_id: int | None = None
    lat: float | None = None
    lon: float | None = None
    living_situation: LivingSituation = LivingSituation.WITH_FAMILY
    language: Language = Language.MANDARIN
    chronic_conditions: str = ""
    medication: str = ""
    allergies: str = ""
    mobility: str = ""
    cognition: str = ""
    notes: str = ""
    subsidy_programme: str | None = None
    monthly_allowance_fen: int | None = None
    contacts: tuple[EmergencyContact, ...] = ()

    @classmethod
    def build(
        cls,
        book: PhoneBook,
        *,
        id_number: str,
        name: str,
        sex: str = "",
        phones: Sequence[str] = (),
        address: str = "",
        community_id: int | None = None,
        lat: str | float | None = None,
        lon: str | float | None = None,
        living_situation: str = "",
        language: str = "",
        chronic_conditions: str = "",
        medication: str = "",
        allergies: str = "",
        mobility: str = "",
        cognition: str = "",
        notes: str = "",
        subsidy_programme: str = "",
        monthly_allowance_fen: int | None = None,
        contacts: Sequence[tuple[str, str, str]] = (),
    ) -> ResidentInput:
        """Check every field; InvalidInput lists each bad one (`contact2_phone` for the second contact).

        `sex` may be left empty: the ID number says it, and a sex that contradicts
        the ID number is refused, since one of the two was typed wrong.
        `contacts` are (name, relation, phone); empty ones are skipped, the rest keep their order.
        """
        checker = Checker()
        parsed_id = checker.check("id_number", lambda: parse_id_number(id_number))
        name_ = checker.check("name", lambda: _name(name))
        sex_ = checker.check("sex", lambda: parse_choice(sex, Sex, labels=SEX_LABELS)) if clean(sex) else None
        if parsed_id is not None and sex_ is not None and sex_ != parsed_id.sex:
            checker.fail(
                "sex", f"{clean(sex)} does not match the ID number, which is a {_sex_word(parsed_id.sex)}'s"
            )
        phones_ = checker.check("phones", lambda: _phones(book, phones))
        lat_ = checker.check("lat", lambda: optional_float(lat, -90, 90))
        lon_ = checker.check("lon", lambda: optional_float(lon, -180, 180))
        if (
            (lat_ is None) != (lon_ is None)
            and "lat" not in _fields(checker)
            and "lon" not in _fields(checker)
        ):
            checker.fail("lat" if lat_ is None else "lon", "give both latitude and longitude, or neither")
        living = checker.check(
            "living_situation",
            lambda: parse_choice(
                living_situation, LivingSituation, labels=LIVING_LABELS, default=LivingSituation.WITH_FAMILY
            ),
        )
        language_ = checker.check(
            "language",
            lambda: parse_choice(language, Language, labels=LANGUAGE_LABELS, default=Language.MANDARIN),
        )
        if monthly_allowance_fen is not None and monthly_allowance_fen < 0:
            checker.fail("monthly_allowance_fen", "the allowance cannot be negative")
        contacts_ = _contacts(book, contacts, checker)
        checker.done()
        assert parsed_id is not None
        assert name_ is not None
        assert phones_ is not None
        assert living is not None
        assert language_ is not None
        return cls(
            id_number=parsed_id.value,
            name=name_,
            sex=Sex(parsed_id.sex),
            birth_date=parsed_id.birth_date,
            phones=phones_,
            address=clean(address),
            community_id=community_id,
            lat=lat_,
            lon=lon_,
            living_situation=living,
            language=language_,
            chronic_conditions=clean(chronic_conditions),
            medication=clean(medication),
            allergies=clean(allergies),
            mobility=clean(mobility),
            cognition=clean(cognition),
            notes=clean(notes),
            subsidy_programme=clean(subsidy_programme) or None,
            monthly_allowance_fen=monthly_allowance_fen,
            contacts=contacts_,
        )


def _fields(checker: Checker) -> set[str]:
    return {e.field for e in checker.errors}


def _sex_word(sex: str) -> str:
    return "man" if sex == Sex.MALE else "woman"


def _name(value: str) -> str:
    text = required(value, "the name")
    if len(text) > 64:
        raise ValueError("a name has at most 64 characters")
    return text


def _phones(book: PhoneBook, values: Sequence[str]) -> tuple[ResidentPhone, ...]:
    seen: dict[str, None] = {}
    for value in values:
        if clean(value):
            seen.setdefault(book.normalise(value), None)
    if len(seen) > MAX_PHONES:
        raise ValueError(f"at most {MAX_PHONES} phone numbers")
    return tuple(ResidentPhone(e164, PhoneKind(book.kind(e164))) for e164 in seen)


def _contacts(
    book: PhoneBook, contacts: Sequence[tuple[str, str, str]], checker: Checker
) -> tuple[EmergencyContact, ...]:
    kept: list[EmergencyContact] = []
    for index, (name, relation, phone) in enumerate(contacts, start=1):
        if not (clean(name) or clean(relation) or clean(phone)):
            continue
        prefix = f"contact{index}_"
        name_ = checker.check(prefix + "name", partial(required, name, "the contact's name"))
        phone_ = checker.check(prefix + "phone", partial(book.normalise, phone))
        if name_ is not None and phone_ is not None:
            kept.append(EmergencyContact(len(kept) + 1, name_, clean(relation), phone_))
    if len(kept) > MAX_CONTACTS:
        checker.fail("contacts", f"at most {MAX_CONTACTS} emergency contacts")
    return tuple(kept)
