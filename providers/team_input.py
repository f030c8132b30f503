"""An emergency team's record as someone enters it, checked field by field into a `TeamInput`.

Every mistake is reported at once, nested ones by position (`members[1].phone`,
`roster[0].starts`), so a form can point at the very box. District names stay
names here; `team_admin.check_districts` and `upsert_team` resolve them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from dispatch.phones import PhoneBook
from dispatch.validation import Checker, clean, optional_float, parse_choice, parse_int, required
from providers.teams import MemberRole, RosterSlot, TeamInput, TeamMember, TeamStatus

# Codes are typed in SMS replies and read out on the phone: short, Latin letters and digits.
_CODE = re.compile(r"[A-Z0-9][A-Z0-9_-]{0,15}")
ROLE_LABELS = {"队长": MemberRole.LEADER, "队员": MemberRole.MEMBER}


@dataclass(frozen=True)
class MemberEntry:
    name: str
    phone: str
    role: str = ""


@dataclass(frozen=True)
class SlotEntry:
    weekday: int | str
    starts: str
    ends: str


def parse_team_code(raw: str) -> str:
    code = clean(raw).upper()
    if not _CODE.fullmatch(code):
        raise ValueError("a team code is 1-16 letters, digits, - or _, starting with a letter or digit")
    return code


def parse_clock(raw: str) -> dt.time:
    """`08:00` or `08:00:00`, local time; midnight is 00:00."""
    text = clean(raw)
    if not re.fullmatch(r"\d{2}:\d{2}(:\d{2})?", text):
        raise ValueError(f"expected a time such as 08:00, got {raw[:20]!r}")
    try:
        return dt.time.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected a time from 00:00 to 23:59, got {text!r}") from None


def _members(checker: Checker, book: PhoneBook, entries: Sequence[MemberEntry]) -> tuple[TeamMember, ...]:
    members: list[TeamMember] = []
    for n, entry in enumerate(entries):
        at = f"members[{n}]"
        name = checker.check(f"{at}.name", partial(required, entry.name, "the member's name"))
        phone = checker.check(f"{at}.phone", partial(book.normalise, entry.phone))
        role = checker.check(
            f"{at}.role",
            partial(parse_choice, entry.role, MemberRole, labels=ROLE_LABELS, default=MemberRole.MEMBER),
        )
        if name is not None and phone is not None and role is not None:
            members.append(TeamMember(name, phone, role))
    phones = [m.phone_e164 for m in members]
    if len(set(phones)) != len(phones):
        checker.fail("members", "two members have the same phone number")
    return tuple(members)


def _roster(checker: Checker, entries: Sequence[SlotEntry]) -> tuple[RosterSlot, ...]:
    slots: list[RosterSlot] = []
    for n, entry in enumerate(entries):
        at = f"roster[{n}]"
        weekday = checker.check(f"{at}.weekday", partial(parse_int, entry.weekday, 1, 7))
        starts = checker.check(f"{at}.starts", partial(parse_clock, entry.starts))
        ends = checker.check(f"{at}.ends", partial(parse_clock, entry.ends))
        if weekday is not None and starts is not None and ends is not None:
            slots.append(RosterSlot(weekday, starts, ends))
    starts_of = [(s.weekday, s.starts) for s in slots]
    if len(set(starts_of)) != len(starts_of):
        checker.fail("roster", "two roster slots start on the same day at the same time")
    return tuple(sorted(slots))


def build_team(
    book: PhoneBook,
    *,
    code: str,
    name: str,
    phone: str,
    base_lat: str | float | None,
    base_lon: str | float | None,
    address: str = "",
    status: TeamStatus = TeamStatus.ACTIVE,
    districts: Sequence[str | int] = (),
    members: Sequence[MemberEntry] = (),
    roster: Sequence[SlotEntry] = (),
) -> TeamInput:
    """Check every field; InvalidInput lists each bad one. `districts` are names, codes or ids."""
    checker = Checker()
    code_ = checker.check("code", lambda: parse_team_code(code))
    name_ = checker.check("name", lambda: required(name, "the name"))
    phone_ = checker.check("phone", lambda: book.normalise(required(phone, "the duty phone")))
    # A team is sent by distance from its base, so the base is not optional.
    lat = checker.check("base_lat", lambda: optional_float(base_lat, -90, 90))
    lon = checker.check("base_lon", lambda: optional_float(base_lon, -180, 180))
    for field, value in (("base_lat", lat), ("base_lon", lon)):
        if value is None and field not in {e.field for e in checker.errors}:
            checker.fail(field, "the base location is required")
    refs = tuple(dict.fromkeys(str(d) if isinstance(d, int) else clean(d) for d in districts))
    if any(not ref for ref in refs):
        checker.fail("districts", "a district name, code or id is empty")
    members_ = _members(checker, book, members)
    roster_ = _roster(checker, roster)
    checker.done()
    assert code_ is not None
    assert name_ is not None
    assert phone_ is not None
    assert lat is not None
    assert lon is not None
    return TeamInput(
        code=code_,
        name=name_,
        phone_e164=phone_,
        base_lat=lat,
        base_lon=lon,
        address=clean(address),
        status=status,
        districts=refs,
        members=members_,
        roster=roster_,
    )
