"""Residents (老人档案): who they are, how they call, whom to call for them.

The resident ID number is personal data: records carry it masked
(`id_number_masked`) and the clear value leaves the database only through
`reveal_id_number`, for an administrator, and leaves a trace in the event log.
Upserts are keyed on the ID number and change nothing (not even `updated_at`)
when the stored record already says the same, so an import can be re-run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field

import asyncpg

from dispatch.database import Conn
from dispatch.devices import COLUMNS as DEVICE_COLUMNS
from dispatch.devices import Device, device_from_row
from dispatch.events import append_event
from dispatch.geography import Place, communities_matching, place_of
from dispatch.id_numbers import mask_id_number
from dispatch.phones import PhoneBook
from dispatch.resident_input import (
    EmergencyContact,
    Language,
    LivingSituation,
    PhoneKind,
    ResidentInput,
    ResidentPhone,
    Sex,
    age_on,
)
from dispatch.users import Role, User
from dispatch.validation import InvalidInput, clean


@dataclass(frozen=True)
class Resident:
    id: int
    id_number_masked: str
    name: str
    sex: Sex
    birth_date: dt.date
    address: str
    community_id: int | None
    lat: float | None
    lon: float | None
    living_situation: LivingSituation
    language: Language
    chronic_conditions: str
    medication: str
    allergies: str
    mobility: str
    cognition: str
    notes: str
    subsidy_programme: str | None
    monthly_allowance_fen: int | None
    active: bool
    created_at: dt.datetime
    updated_at: dt.datetime

    def age_on(self, day: dt.date) -> int:
        return age_on(self.birth_date, day)


@dataclass(frozen=True)
class ResidentCard:
    """Everything the console shows when a resident calls or presses the button."""

    resident: Resident
    place: Place | None
    phones: tuple[ResidentPhone, ...]
    contacts: tuple[EmergencyContact, ...]
    devices: tuple[Device, ...]
    subsidy_programme_name: str | None


@dataclass(frozen=True)
class ResidentSummary:
    """One line of a search result or of the residents behind a caller number."""

    id: int
    id_number_masked: str
    name: str
    sex: Sex
    birth_date: dt.date
    address: str
    community_id: int | None
    community: str | None
    district: str | None
    living_situation: LivingSituation
    phones: tuple[str, ...] = field(repr=False)
    active: bool


RESIDENT_COLUMNS = """r.id, r.id_number, r.name, r.sex, r.birth_date, r.address, r.community_id, r.lat, r.lon,
    r.living_situation, r.language, r.chronic_conditions, r.medication, r.allergies, r.mobility,
    r.cognition, r.notes, r.subsidy_programme, r.monthly_allowance_fen, r.active, r.created_at,
    r.updated_at"""


def _resident(row: asyncpg.Record) -> Resident:
    return Resident(
        id=row["id"],
        id_number_masked=mask_id_number(row["id_number"]),
        name=row["name"],
        sex=Sex(row["sex"]),
        birth_date=row["birth_date"],
        address=row["address"],
        community_id=row["community_id"],
        lat=row["lat"],
        lon=row["lon"],
        living_situation=LivingSituation(row["living_situation"]),
        language=Language(row["language"]),
        chronic_conditions=row["chronic_conditions"],
        medication=row["medication"],
        allergies=row["allergies"],
        mobility=row["mobility"],
        cognition=row["cognition"],
        notes=row["notes"],
        subsidy_programme=row["subsidy_programme"],
        monthly_allowance_fen=row["monthly_allowance_fen"],
        active=row["active"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _stored_input(
    row: asyncpg.Record, phones: tuple[ResidentPhone, ...], contacts: tuple[EmergencyContact, ...]
) -> ResidentInput:
    return ResidentInput(
        id_number=row["id_number"],
        name=row["name"],
        sex=Sex(row["sex"]),
        birth_date=row["birth_date"],
        phones=phones,
        address=row["address"],
        community_id=row["community_id"],
        lat=row["lat"],
        lon=row["lon"],
        living_situation=LivingSituation(row["living_situation"]),
        language=Language(row["language"]),
        chronic_conditions=row["chronic_conditions"],
        medication=row["medication"],
        allergies=row["allergies"],
        mobility=row["mobility"],
        cognition=row["cognition"],
        notes=row["notes"],
        subsidy_programme=row["subsidy_programme"],
        monthly_allowance_fen=row["monthly_allowance_fen"],
        contacts=contacts,
    )


INSERT_RESIDENT = f"""
INSERT INTO residents AS r (id_number, name, sex, birth_date, address, community_id, lat, lon,
    living_situation, language, chronic_conditions, medication, allergies, mobility, cognition, notes,
    subsidy_programme, monthly_allowance_fen)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
ON CONFLICT (id_number) DO NOTHING
RETURNING {RESIDENT_COLUMNS}
"""

UPDATE_RESIDENT = f"""
UPDATE residents AS r SET name = $2, sex = $3, birth_date = $4, address = $5, community_id = $6,
    lat = $7, lon = $8, living_situation = $9, language = $10, chronic_conditions = $11,
    medication = $12, allergies = $13, mobility = $14, cognition = $15, notes = $16,
    subsidy_programme = $17, monthly_allowance_fen = $18, updated_at = now()
WHERE r.id_number = $1
RETURNING {RESIDENT_COLUMNS}
"""


def _resident_args(resident: ResidentInput) -> tuple[object, ...]:
    return (
        resident.id_number,
        resident.name,
        resident.sex.value,
        resident.birth_date,
        resident.address,
        resident.community_id,
        resident.lat,
        resident.lon,
        resident.living_situation.value,
        resident.language.value,
        resident.chronic_conditions,
        resident.medication,
        resident.allergies,
        resident.mobility,
        resident.cognition,
        resident.notes,
        resident.subsidy_programme,
        resident.monthly_allowance_fen,
    )


async def _phones_of(conn: Conn, resident_id: int) -> tuple[ResidentPhone, ...]:
    rows = await conn.fetch(
        "SELECT e164, kind FROM resident_phones WHERE resident_id = $1 ORDER BY position, e164", resident_id
    )
    return tuple(ResidentPhone(r["e164"], PhoneKind(r["kind"])) for r in rows)


async def _contacts_of(conn: Conn, resident_id: int) -> tuple[EmergencyContact, ...]:
    rows = await conn.fetch(
        """SELECT position, name, relation, phone_e164 FROM emergency_contacts
           WHERE resident_id = $1 ORDER BY position""",
        resident_id,
    )
    return tuple(EmergencyContact(r["position"], r["name"], r["relation"], r["phone_e164"]) for r in rows)


async def _replace_phones(conn: Conn, resident_id: int, phones: tuple[ResidentPhone, ...]) -> None:
    await conn.execute("DELETE FROM resident_phones WHERE resident_id = $1", resident_id)
    await conn.execute(
        """INSERT INTO resident_phones (resident_id, e164, kind, position)
           SELECT $1, e164, kind, position
           FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS p(e164, kind, position)""",
        resident_id,
        [p.e164 for p in phones],
        [p.kind.value for p in phones],
    )


async def _replace_contacts(conn: Conn, resident_id: int, contacts: tuple[EmergencyContact, ...]) -> None:
    await conn.execute("DELETE FROM emergency_contacts WHERE resident_id = $1", resident_id)
    await conn.execute(
        """INSERT INTO emergency_contacts (resident_id, position, name, relation, phone_e164)
           SELECT $1, position, name, relation, phone
           FROM unnest($2::int2[], $3::text[], $4::text[], $5::text[])
                AS c(position, name, relation, phone)""",
        resident_id,
        [c.position for c in contacts],
        [c.name for c in contacts],
        [c.relation for c in contacts],
        [c.phone_e164 for c in contacts],
    )


_FOREIGN_KEYS = {
    "residents_community_id_fkey": "community_id",
    "residents_subsidy_programme_fkey": "subsidy_programme",
}


async def upsert_resident(
    conn: Conn, resident: ResidentInput, *, actor: str | None = None
) -> tuple[Resident, bool]:
    """Create the resident with this ID number or bring it up to date; True if anything changed.

    With an `actor` (a person at the console, an import), a change is written to the event log as
    `resident.created` / `resident.updated` naming the fields changed, never their values: the
    log is read more widely than the record.
    """
    try:
        async with conn.transaction():
            saved, changed, fields = await _upsert_resident(conn, resident)
            if changed and actor is not None:
                await append_event(
                    conn,
                    subject_type="resident",
                    subject_id=saved.id,
                    kind="resident.updated" if fields else "resident.created",
                    actor=actor,
                    data={"fields": fields} if fields else {},
                )
            return saved, changed
    except asyncpg.ForeignKeyViolationError as exc:
        name = _FOREIGN_KEYS.get(exc.constraint_name or "", "resident")
        raise InvalidInput.one(name, "refers to nothing that exists") from None


def _changed_fields(before: ResidentInput, after: ResidentInput) -> list[str]:
    return [f.name for f in dataclasses.fields(after) if getattr(before, f.name) != getattr(after, f.name)]


async def _upsert_resident(conn: Conn, resident: ResidentInput) -> tuple[Resident, bool, list[str]]:
    """The saved resident, whether anything changed, and which fields did (none for a new one)."""
    args = _resident_args(resident)
    row = await conn.fetchrow(INSERT_RESIDENT, *args)
    if row is not None:
        await _replace_phones(conn, row["id"], resident.phones)
        await _replace_contacts(conn, row["id"], resident.contacts)
        return _resident(row), True, []
    row = await conn.fetchrow(
        f"SELECT {RESIDENT_COLUMNS} FROM residents r WHERE r.id_number = $1 FOR UPDATE", resident.id_number
    )
    assert row is not None
    phones = await _phones_of(conn, row["id"])
    contacts = await _contacts_of(conn, row["id"])
    stored = _stored_input(row, phones, contacts)
    if stored == resident:
        return _resident(row), False, []
    row = await conn.fetchrow(UPDATE_RESIDENT, *args)
    assert row is not None
    if phones != resident.phones:
        await _replace_phones(conn, row["id"], resident.phones)
    if contacts != resident.contacts:
        await _replace_contacts(conn, row["id"], resident.contacts)
    return _resident(row), True, _changed_fields(stored, resident)


async def resident_input_of(conn: Conn, id_number: str) -> ResidentInput | None:
    """The stored record in input form (for a form to edit, or an import to fill in missing columns)."""
    row = await conn.fetchrow(f"SELECT {RESIDENT_COLUMNS} FROM residents r WHERE r.id_number = $1", id_number)
    if row is None:
        return None
    return _stored_input(row, await _phones_of(conn, row["id"]), await _contacts_of(conn, row["id"]))


async def get_resident(conn: Conn, resident_id: int) -> ResidentCard | None:
    row = await conn.fetchrow(
        f"""SELECT {RESIDENT_COLUMNS}, sp.name AS programme_name
            FROM residents r LEFT JOIN subsidy_programmes sp ON sp.code = r.subsidy_programme
            WHERE r.id = $1""",
        resident_id,
    )
    if row is None:
        return None
    devices = await conn.fetch(
        f"SELECT {DEVICE_COLUMNS} FROM devices WHERE resident_id = $1 ORDER BY kind, id", resident_id
    )
    return ResidentCard(
        resident=_resident(row),
        place=await place_of(conn, row["community_id"]) if row["community_id"] is not None else None,
        phones=await _phones_of(conn, resident_id),
        contacts=await _contacts_of(conn, resident_id),
        devices=tuple(device_from_row(d) for d in devices),
        subsidy_programme_name=row["programme_name"],
    )


async def reveal_id_number(conn: Conn, resident_id: int, user: User, *, reason: str = "") -> str | None:
    """The clear ID number, for an administrator only; each look is written to the event log."""
    if not user.may(Role.ADMIN):
        raise PermissionError("only an administrator may see a resident's full ID number")
    async with conn.transaction():
        value: str | None = await conn.fetchval("SELECT id_number FROM residents WHERE id = $1", resident_id)
        if value is not None:
            await conn.execute(
                """INSERT INTO events (subject_type, subject_id, kind, actor, reason)
                   VALUES ('resident', $1, 'id_number_revealed', $2, $3)""",
                resident_id,
                f"user:{user.username}",
                reason,
            )
    return value


SUMMARY = """
SELECT r.id, r.id_number, r.name, r.sex, r.birth_date, r.address, r.community_id, c.name AS community,
       d.name AS district, r.living_situation, r.active,
       ARRAY(SELECT p.e164 FROM resident_phones p WHERE p.resident_id = r.id ORDER BY p.position) AS phones
FROM residents r
LEFT JOIN communities c ON c.id = r.community_id
LEFT JOIN streets s ON s.id = c.street_id
LEFT JOIN districts d ON d.id = s.district_id
"""


def _summary(row: asyncpg.Record) -> ResidentSummary:
    return ResidentSummary(
        id=row["id"],
        id_number_masked=mask_id_number(row["id_number"]),
        name=row["name"],
        sex=Sex(row["sex"]),
        birth_date=row["birth_date"],
        address=row["address"],
        community_id=row["community_id"],
        community=row["community"],
        district=row["district"],
        living_situation=LivingSituation(row["living_situation"]),
        phones=tuple(row["phones"]),
        active=row["active"],
    )


async def find_residents_by_phone(conn: Conn, e164: str) -> list[ResidentSummary]:
    """Residents whose own phone, or whose device's line, is this number (a shared landline gives several)."""
    rows = await conn.fetch(
        SUMMARY
        + """WHERE r.id IN (SELECT resident_id FROM resident_phones WHERE e164 = $1
                            UNION
                            SELECT resident_id FROM devices
                            WHERE caller_e164 = $1 AND resident_id IS NOT NULL)
             ORDER BY r.active DESC, r.id""",
        e164,
    )
    return [_summary(r) for r in rows]


def _like_pattern(fragment: str) -> str:
    escaped = fragment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search_residents(
    conn: Conn,
    book: PhoneBook,
    *,
    name_fragment: str | None = None,
    phone: str | None = None,
    community: str | int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[ResidentSummary], int]:
    """A page of matching residents and how many match in all.

    `phone` may be in any form people write (PhoneNumberError if it is no
    number); `community` is an id, a name (every community of that name) or a
    path `district/street/community` (PlaceError if it names none).
    Name matches rank exact names first, then by trigram similarity.
    """
    conditions: list[str] = []
    args: list[object] = []
    fragment = clean(name_fragment)
    if fragment:
        args.append(_like_pattern(fragment))
        conditions.append(f"r.name ILIKE ${len(args)}")
    if clean(phone):
        args.append(book.normalise(phone or ""))
        conditions.append(
            f"""r.id IN (SELECT resident_id FROM resident_phones WHERE e164 = ${len(args)}
                         UNION SELECT resident_id FROM devices WHERE caller_e164 = ${len(args)})"""
        )
    if community is not None and clean(str(community)):
        args.append(await communities_matching(conn, community))
        conditions.append(f"r.community_id = ANY(${len(args)}::int[])")
    where = ("WHERE " + " AND ".join(conditions)) if conditions else ""
    total: int = await conn.fetchval(f"SELECT count(*) FROM residents r {where}", *args)
    order = "r.id"
    if fragment:
        args.append(fragment)
        order = f"r.name = ${len(args)} DESC, similarity(r.name, ${len(args)}) DESC, r.id"
    args.extend([limit, offset])
    rows = await conn.fetch(
        f"{SUMMARY} {where} ORDER BY {order} LIMIT ${len(args) - 1} OFFSET ${len(args)}", *args
    )
    return [_summary(r) for r in rows], total
