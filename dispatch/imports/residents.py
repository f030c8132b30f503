"""Resident rows: the columns of `templates/residents.csv` and how one row becomes a `ResidentInput`."""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

from dispatch.database import Conn
from dispatch.geography import PlaceError, resolve_community, resolve_community_ref
from dispatch.imports.columns import Cells, Column, Header
from dispatch.phones import PhoneBook
from dispatch.resident_input import PhoneKind, ResidentInput
from dispatch.residents import resident_input_of, upsert_resident
from dispatch.subsidies import find_subsidy_programme
from dispatch.validation import Checker, normalise_phones, parse_yuan, split_list

CONTACTS = 3

COLUMNS: tuple[Column, ...] = (
    Column("id_number", "身份证号", ("id_number", "身份证号码", "身份证", "证件号码"), required=True),
    Column("name", "姓名", ("name",), required=True),
    Column("sex", "性别", ("sex", "gender")),
    Column("mobile", "手机", ("mobile", "手机号", "手机号码", "移动电话")),
    Column("landline", "固定电话", ("landline", "座机", "家庭电话", "电话", "phone")),
    Column("address", "地址", ("address", "住址", "家庭住址")),
    Column("district", "区", ("district", "区县", "所属区", "区(旗县)")),
    Column("street", "街道", ("street", "街道办事处", "乡镇街道")),
    Column("community", "社区", ("community", "所属社区", "社区(村)")),
    Column("lon", "经度", ("lon", "lng", "longitude")),
    Column("lat", "纬度", ("lat", "latitude")),
    Column("living_situation", "居住状况", ("living_situation", "居住情况")),
    Column("language", "语言", ("language",)),
    Column("chronic_conditions", "慢性病", ("chronic_conditions", "慢病")),
    Column("medication", "用药", ("medication", "用药情况")),
    Column("allergies", "过敏", ("allergies", "过敏史")),
    Column("mobility", "行动能力", ("mobility",)),
    Column("cognition", "认知", ("cognition", "认知状况")),
    Column("notes", "备注", ("notes",)),
    Column("subsidy_programme", "补贴项目", ("subsidy_programme", "补贴类型")),
    Column("monthly_allowance", "月补贴(元)", ("monthly_allowance", "月补贴金额")),
    *(
        Column(f"contact{n}_{part}", f"紧急联系人{n}{label}", (f"contact{n}_{part}",))
        for n in range(1, CONTACTS + 1)
        for part, label in (("name", "姓名"), ("relation", "关系"), ("phone", "电话"))
    ),
)

CONTACT_COLUMNS = tuple(c.field for c in COLUMNS if c.field.startswith("contact"))

# A file without these columns says nothing about those fields: the stored values stay.
# (A column that is present but empty does clear its field.)
_KEPT_WHEN_ABSENT: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("address",), ("address",)),
    (("lat", "lon"), ("lat", "lon")),
    (("district", "street", "community"), ("community_id",)),
    (("living_situation",), ("living_situation",)),
    (("language",), ("language",)),
    (("chronic_conditions",), ("chronic_conditions",)),
    (("medication",), ("medication",)),
    (("allergies",), ("allergies",)),
    (("mobility",), ("mobility",)),
    (("cognition",), ("cognition",)),
    (("notes",), ("notes",)),
    (("subsidy_programme",), ("subsidy_programme",)),
    (("monthly_allowance",), ("monthly_allowance_fen",)),
    (CONTACT_COLUMNS, ("contacts",)),
)
_PHONE_COLUMNS = {"mobile": PhoneKind.MOBILE, "landline": PhoneKind.LANDLINE}

# ResidentInput's field names for what the row has under other names.
_FIELD_COLUMNS = {
    "phones": "mobile",
    "community_id": "community",
    "monthly_allowance_fen": "monthly_allowance",
    "contacts": "contact1_name",
}


def _id_text(text: str) -> str:
    """The ID number without the marks people add to keep Excel from making it a number."""
    if text.startswith('="') and text.endswith('"'):
        return text[2:-1]
    return text.removeprefix("'")


class ResidentRows:
    """Turns rows into residents for one import; places and programmes are looked up once each."""

    kind = "residents"
    columns = COLUMNS
    key_field = "id_number"

    def __init__(self, conn: Conn, book: PhoneBook) -> None:
        self.conn = conn
        self.book = book
        self._places: dict[tuple[str, str, str], int | str] = {}
        self._programmes: dict[str, str | None] = {}

    def column_of(self, field: str) -> str:
        return _FIELD_COLUMNS.get(field, field)

    async def build(self, cells: Cells) -> ResidentInput:
        checker = Checker()
        if isinstance(cells.raw("id_number"), float):
            checker.fail(
                "id_number",
                "stored as a number, so Excel has rounded it; format the column as text and retype it",
            )
        phones: list[str] = []
        for field in ("mobile", "landline"):
            numbers = list(split_list(cells.text(field)))
            found = checker.check(field, partial(normalise_phones, self.book, numbers))
            phones.extend(found or ())
        community_id = await self._community(cells, checker)
        programme = await self._programme(cells.text("subsidy_programme"), checker)
        allowance = checker.check("monthly_allowance", lambda: parse_yuan(cells.text("monthly_allowance")))
        contacts = [
            (
                cells.text(f"contact{n}_name"),
                cells.text(f"contact{n}_relation"),
                cells.text(f"contact{n}_phone"),
            )
            for n in range(1, CONTACTS + 1)
        ]
        built = checker.check(
            "row",
            lambda: ResidentInput.build(
                self.book,
                id_number=_id_text(cells.text("id_number")),
                name=cells.text("name"),
                sex=cells.text("sex"),
                phones=phones,
                address=cells.text("address"),
                community_id=community_id,
                lat=cells.text("lat"),
                lon=cells.text("lon"),
                living_situation=cells.text("living_situation"),
                language=cells.text("language"),
                chronic_conditions=cells.text("chronic_conditions"),
                medication=cells.text("medication"),
                allergies=cells.text("allergies"),
                mobility=cells.text("mobility"),
                cognition=cells.text("cognition"),
                notes=cells.text("notes"),
                subsidy_programme=programme or "",
                monthly_allowance_fen=allowance,
                contacts=contacts,
            ),
        )
        checker.done()
        assert built is not None
        return await self._keep_absent(built, cells.header)

    async def _keep_absent(self, built: ResidentInput, header: Header) -> ResidentInput:
        kept = [
            f for columns, fields in _KEPT_WHEN_ABSENT if not any(map(header.has, columns)) for f in fields
        ]
        absent_phones = {kind for column, kind in _PHONE_COLUMNS.items() if not header.has(column)}
        if not kept and not absent_phones:
            return built
        stored = await resident_input_of(self.conn, built.id_number)
        if stored is None:
            return built
        changes: dict[str, Any] = {f: getattr(stored, f) for f in kept}
        if absent_phones:
            # Numbers of the kind the file has no column for are kept, after the file's own.
            extra = [p for p in stored.phones if p.kind in absent_phones and p not in built.phones]
            changes["phones"] = built.phones + tuple(extra)
        return dataclasses.replace(built, **changes)

    async def _community(self, cells: Cells, checker: Checker) -> int | None:
        names = (cells.text("district"), cells.text("street"), cells.text("community"))
        district, street, community = names
        if not community:
            if district or street:
                checker.fail("community", "the community is needed when a district or street is given")
            return None
        if names not in self._places:
            try:
                if "/" in community:
                    place = await resolve_community_ref(self.conn, community)
                else:
                    place = await resolve_community(self.conn, community, street=street, district=district)
                self._places[names] = place.community_id
            except PlaceError as exc:
                self._places[names] = str(exc)
        found = self._places[names]
        if isinstance(found, str):
            checker.fail("community", found)
            return None
        return found

    async def _programme(self, ref: str, checker: Checker) -> str | None:
        if not ref:
            return None
        if ref not in self._programmes:
            programme = await find_subsidy_programme(self.conn, ref)
            self._programmes[ref] = programme.code if programme else None
        code = self._programmes[ref]
        if code is None:
            checker.fail("subsidy_programme", f"no subsidy programme {ref!r}")
        return code

    def key(self, resident: ResidentInput) -> str:
        return resident.id_number

    async def save(self, resident: ResidentInput) -> tuple[bool, bool]:
        """(created, changed)."""
        saved, changed = await upsert_resident(self.conn, resident, actor="system:import")
        # Both timestamps start as the transaction's now(); an update moves only updated_at.
        return changed and saved.created_at == saved.updated_at, changed
