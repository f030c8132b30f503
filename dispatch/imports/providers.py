"""Provider rows: the columns of `templates/providers.csv` and how one row becomes a `ProviderInput`."""

from __future__ import annotations

import dataclasses

from dispatch.database import Conn
from dispatch.imports.columns import Cells, Column, Header
from dispatch.phones import PhoneBook
from dispatch.validation import Checker, InvalidInput, split_list
from providers.provider_input import ProviderInput, parse_item_offers
from providers.registry import check_offer, provider_input_of, upsert_provider

COLUMNS: tuple[Column, ...] = (
    Column(
        "licence_no",
        "统一社会信用代码",
        ("licence_no", "license_no", "执照号", "营业执照号", "执照号码", "营业执照注册号", "licence"),
        required=True,
    ),
    Column("name", "名称", ("name", "服务商名称", "企业名称", "单位名称"), required=True),
    Column("contact_name", "联系人", ("contact_name", "contact", "负责人")),
    Column("sms", "短信号码", ("sms", "短信手机", "接单手机"), required=True),
    Column("phone", "电话", ("phone", "联系电话", "固定电话")),
    Column("address", "地址", ("address", "办公地址")),
    Column("lon", "经度", ("lon", "lng", "longitude")),
    Column("lat", "纬度", ("lat", "latitude")),
    Column("capacity", "服务能力(并发单数)", ("capacity", "并发单数")),
    Column("status", "状态", ("status",)),
    Column("items", "服务项目", ("items", "service_items")),
    Column("areas", "服务区域", ("areas", "service_areas")),
)


# A file without these columns says nothing about those fields: the stored values stay.
# (A column that is present but empty does clear its field.)
_KEPT_WHEN_ABSENT: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("contact_name",), ("contact_name",)),
    (("phone",), ("phone_e164",)),
    (("address",), ("address",)),
    (("lat", "lon"), ("base_lat", "base_lon")),
    (("capacity",), ("capacity",)),
    (("status",), ("status",)),
    (("items",), ("items",)),
    (("areas",), ("areas",)),
)


class ProviderRows:
    """Turns rows into providers for one import."""

    kind = "providers"
    columns = COLUMNS
    key_field = "licence_no"

    def __init__(self, conn: Conn, book: PhoneBook) -> None:
        self.conn = conn
        self.book = book

    def column_of(self, field: str) -> str:
        return field

    async def build(self, cells: Cells) -> ProviderInput:
        checker = Checker()
        built = checker.check("row", lambda: self._build(cells))
        # Unknown items and areas are found in the database; look now so that the row's report is complete.
        failed = {e.field for e in checker.errors}
        items = () if "items" in failed else parse_item_offers(cells.text("items"))
        areas = tuple(split_list(cells.text("areas")))
        try:
            await check_offer(self.conn, items, areas)
        except InvalidInput as exc:
            checker.errors.extend(exc.errors)
        checker.done()
        assert built is not None
        return await self._keep_absent(built, cells.header)

    def _build(self, cells: Cells) -> ProviderInput:
        return ProviderInput.build(
            self.book,
            licence_no=cells.text("licence_no"),
            name=cells.text("name"),
            sms=cells.text("sms"),
            contact_name=cells.text("contact_name"),
            phone=cells.text("phone"),
            address=cells.text("address"),
            lat=cells.text("lat"),
            lon=cells.text("lon"),
            capacity=cells.text("capacity"),
            status=cells.text("status"),
            items=cells.text("items"),
            areas=cells.text("areas"),
        )

    async def _keep_absent(self, built: ProviderInput, header: Header) -> ProviderInput:
        kept = [
            f for columns, fields in _KEPT_WHEN_ABSENT if not any(map(header.has, columns)) for f in fields
        ]
        if not kept:
            return built
        stored = await provider_input_of(self.conn, built.licence_no)
        if stored is None:
            return built
        return dataclasses.replace(built, **{f: getattr(stored, f) for f in kept})

    def key(self, provider: ProviderInput) -> str:
        return provider.licence_no

    async def save(self, provider: ProviderInput) -> tuple[bool, bool]:
        """(created, changed)."""
        saved, changed = await upsert_provider(self.conn, provider)
        # Both timestamps start as the transaction's now(); an update moves only updated_at.
        return changed and saved.created_at == saved.updated_at, changed
