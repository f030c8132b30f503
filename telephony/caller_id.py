"""Who is calling: a resident (their own phone, or their in-home unit's line), a provider,
an emergency team's duty phone or member, or nobody we know.

The matching rules are the registry's (`find_residents_by_phone`, `device_by_caller`,
`providers_by_phone`, `find_team_contacts`); those cost four round trips a number,
and calls arrive in bursts, so the recorder asks about every new number of a batch
in one query here. `tests/test_caller_id.py` holds the two to the same answers.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from dispatch.database import Conn
from dispatch.devices import DeviceKind
from dispatch.phones import PhoneBook

# Devices whose call to the hotline is an SOS press in itself.
SOS_DEVICE_KINDS = frozenset({DeviceKind.HOME_UNIT.value, DeviceKind.PENDANT.value})


class Party(StrEnum):
    RESIDENT = "resident"
    PROVIDER = "provider"
    TEAM = "team"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Identity:
    party: Party
    resident_id: int | None = None
    device_id: int | None = None
    device_kind: str | None = None
    provider_id: int | None = None
    team_id: int | None = None
    # residents whose own phone this is (a shared landline gives several); not a device's line
    own_phone_of: tuple[int, ...] = ()

    @property
    def sos_device(self) -> bool:
        return self.device_kind in SOS_DEVICE_KINDS


UNKNOWN = Identity(Party.UNKNOWN)

# One row per thing the number belongs to; `rank` orders each kind as the registry does
# (active first, then by id).
IDENTIFY = """
WITH n AS (SELECT DISTINCT unnest($1::text[]) AS number)
SELECT n.number, 'phone' AS kind, r.id AS id, r.id AS resident_id, NULL::text AS device_kind,
       (NOT r.active)::int AS rank
  FROM n JOIN resident_phones p ON p.e164 = n.number JOIN residents r ON r.id = p.resident_id
UNION ALL
SELECT n.number, 'device', d.id, d.resident_id, d.kind, 0
  FROM n JOIN devices d ON d.caller_e164 = n.number
UNION ALL
SELECT n.number, 'provider', pr.id, NULL, NULL, (pr.status <> 'active')::int
  FROM n JOIN providers pr ON pr.sms_e164 = n.number OR pr.phone_e164 = n.number
UNION ALL
SELECT n.number, 'team', t.id, NULL, NULL, 0
  FROM n JOIN emergency_teams t ON t.phone_e164 = n.number
UNION ALL
SELECT n.number, 'team', m.team_id, NULL, NULL, 0
  FROM n JOIN team_members m ON m.phone_e164 = n.number
ORDER BY 1, 2, 6, 3
"""


async def identify_numbers(conn: Conn, numbers: Iterable[str]) -> dict[str, Identity]:
    """An Identity for each E.164 number (UNKNOWN for the ones nobody has)."""
    wanted = sorted(set(numbers))
    found: dict[str, dict[str, list[tuple[int, int | None, str | None]]]] = {}
    if wanted:
        for row in await conn.fetch(IDENTIFY, wanted):
            kinds = found.setdefault(row["number"], {})
            kinds.setdefault(row["kind"], []).append((row["id"], row["resident_id"], row["device_kind"]))
    return {number: _identity(found.get(number, {})) for number in wanted}


def _identity(kinds: dict[str, list[tuple[int, int | None, str | None]]]) -> Identity:
    own = tuple(dict.fromkeys(id_ for id_, _, _ in kinds.get("phone", [])))
    device = kinds.get("device", [None])[0]  # caller_e164 is unique: at most one
    if device is not None and device[1] is not None:
        return Identity(
            Party.RESIDENT,
            resident_id=device[1],
            device_id=device[0],
            device_kind=device[2],
            own_phone_of=own,
        )
    if own:
        device_id, device_kind = (device[0], device[2]) if device else (None, None)
        return Identity(
            Party.RESIDENT, resident_id=own[0], device_id=device_id, device_kind=device_kind, own_phone_of=own
        )
    if device is not None:
        # a unit nobody is registered at: still an SOS line
        return Identity(Party.UNKNOWN, device_id=device[0], device_kind=device[2])
    if "provider" in kinds:
        return Identity(Party.PROVIDER, provider_id=kinds["provider"][0][0])
    if "team" in kinds:
        return Identity(Party.TEAM, team_id=kinds["team"][0][0])
    return UNKNOWN


# A CN mobile as a trunk delivers it: 11 digits starting 13-19.
_CN_MOBILE = re.compile(r"1[3-9][0-9]{9}")


def normalised(book: PhoneBook, raw: str) -> str | None:
    """E.164 of a caller ID, as `PhoneBook.try_normalise` gives it.

    phonenumbers takes about 100 µs a number, more than everything else a call costs. Whether
    a CN mobile is valid is decided by its first five digits (libphonenumber's CN patterns go no
    finer, e.g. 1740[0-5]), so the PhoneBook is asked once per five-digit block and a number in a
    valid block is +86 and its digits. Other forms go to the PhoneBook, once each.
    """
    if book.region == "CN" and _CN_MOBILE.fullmatch(raw):
        block = raw[:5]
        valid = _MOBILE_BLOCKS.get(block)
        if valid is None:
            valid = _MOBILE_BLOCKS[block] = book.try_normalise(raw) == "+86" + raw
        return "+86" + raw if valid else None
    return _normalised(book, raw)


_MOBILE_BLOCKS: dict[str, bool] = {}


@functools.lru_cache(maxsize=100_000)
def _normalised(book: PhoneBook, raw: str) -> str | None:
    return book.try_normalise(raw)
