"""A provider's record as people enter it (form, spreadsheet row), checked field by field.

Licence numbers are verified (the unified social credit code carries a check
character), phones normalised, the offered items parsed from text such as
`HK01:80;HK02`. Area names stay names here: `registry.upsert_provider`
resolves them against the geography it finds in the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from dispatch.phones import PhoneBook
from dispatch.validation import (
    Checker,
    clean,
    optional_float,
    parse_choice,
    parse_int,
    parse_yuan,
    required,
    split_list,
)


class ProviderStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    INACTIVE = "inactive"


STATUS_LABELS = {
    "正常": ProviderStatus.ACTIVE,
    "启用": ProviderStatus.ACTIVE,
    "暂停": ProviderStatus.SUSPENDED,
    "停用": ProviderStatus.INACTIVE,
    "注销": ProviderStatus.INACTIVE,
}

# GB 32100-2015: the unified social credit code's alphabet (no I, O, S, V, Z) and weights.
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def uscc_check_character(first17: str) -> str:
    total = sum(_USCC_ALPHABET.index(ch) * w for ch, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_ALPHABET[-total % 31]


def parse_licence_no(raw: str) -> str:
    """An 18-character unified social credit code (check character verified) or a 15-digit licence number."""
    value = clean(raw).upper().replace(" ", "")
    if len(value) == 15 and value.isdigit():
        return value
    if len(value) != 18:
        raise ValueError(
            f"a unified social credit code has 18 characters (an old licence number 15 digits), "
            f"this has {len(value)}"
        )
    if any(ch not in _USCC_ALPHABET for ch in value):
        raise ValueError(
            "a unified social credit code uses digits and capital letters other than I, O, S, V, Z"
        )
    if uscc_check_character(value[:17]) != value[17]:
        raise ValueError("the check character of the unified social credit code does not match (mistyped?)")
    return value


@dataclass(frozen=True)
class ItemOffer:
    """An item the provider offers; no price means the catalogue's list price."""

    item_code: str
    price_fen: int | None = None


def parse_item_offers(text: str) -> tuple[ItemOffer, ...]:
    """`HK01:80;HK02` → HK01 at 80 yuan, HK02 at the list price."""
    offers: dict[str, ItemOffer] = {}
    for part in split_list(text):
        code, _, price = part.partition(":")
        code = code.strip().upper()
        if not code:
            raise ValueError(f"{part!r} has no item code")
        if code in offers:
            raise ValueError(f"item {code} is listed twice")
        offers[code] = ItemOffer(code, parse_yuan(price))
    return tuple(offers.values())


@dataclass(frozen=True)
class ProviderInput:
    """A provider's record as someone enters it, checked and normalised; areas still as names."""

    licence_no: str
    name: str
    sms_e164: str = field(repr=False)
    contact_name: str = ""
    phone_e164: str | None = field(default=None, repr=False)
    address: str = ""
    base_lat: float | None = None
    base_lon: float | None = None
    capacity: int = 1
    status: ProviderStatus = ProviderStatus.ACTIVE
    items: tuple[ItemOffer, ...] = ()
    areas: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        book: PhoneBook,
        *,
        licence_no: str,
        name: str,
        sms: str,
        contact_name: str = "",
        phone: str = "",
        address: str = "",
        lat: str | float | None = None,
        lon: str | float | None = None,
        capacity: str | int | None = None,
        status: str = "",
        items: str | Sequence[ItemOffer] = (),
        areas: str | Sequence[str] = (),
    ) -> ProviderInput:
        """Check every field; InvalidInput lists each bad one. `items` may be text like `HK01:80;HK02`,
        `areas` text like `新城区；光明社区` (district or community names, or district/street/community)."""
        checker = Checker()
        licence = checker.check("licence_no", lambda: parse_licence_no(licence_no))
        name_ = checker.check("name", lambda: required(name, "the name"))
        sms_ = checker.check("sms", lambda: book.normalise(required(sms, "the SMS number")))
        phone_ = checker.check("phone", lambda: book.normalise(phone) if clean(phone) else None)
        lat_ = checker.check("lat", lambda: optional_float(lat, -90, 90))
        lon_ = checker.check("lon", lambda: optional_float(lon, -180, 180))
        if (lat_ is None) != (lon_ is None) and not {"lat", "lon"} & {e.field for e in checker.errors}:
            checker.fail("lat" if lat_ is None else "lon", "give both latitude and longitude, or neither")
        capacity_ = checker.check("capacity", lambda: parse_int(capacity, 0, 10_000, default=1))
        status_ = checker.check(
            "status",
            lambda: parse_choice(status, ProviderStatus, labels=STATUS_LABELS, default=ProviderStatus.ACTIVE),
        )
        items_ = checker.check(
            "items", lambda: parse_item_offers(items) if isinstance(items, str) else tuple(items)
        )
        areas_ = (
            tuple(split_list(areas)) if isinstance(areas, str) else tuple(clean(a) for a in areas if clean(a))
        )
        checker.done()
        assert licence is not None
        assert name_ is not None
        assert sms_ is not None
        assert capacity_ is not None
        assert status_ is not None
        assert items_ is not None
        return cls(
            licence_no=licence,
            name=name_,
            sms_e164=sms_,
            contact_name=clean(contact_name),
            phone_e164=phone_,
            address=clean(address),
            base_lat=lat_,
            base_lon=lon_,
            capacity=capacity_,
            status=status_,
            items=items_,
            areas=areas_,
        )
