"""In-home alarm devices (电子保姆), pendants and sensors, and how each one reaches us.

A device is known by how it calls in: the caller number of its SIM or
landline (Contact ID through Asterisk), its SIA DC-09 account, or its id at a
vendor's cloud. Each of those is unique, so any one finds the device and,
through it, the resident.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

import asyncpg

from dispatch.database import Conn
from dispatch.phones import PhoneBook
from dispatch.validation import Checker, InvalidInput, clean, parse_choice, parse_int, required


class DeviceKind(StrEnum):
    HOME_UNIT = "home_unit"
    PENDANT = "pendant"
    SMOKE = "smoke"
    GAS = "gas"
    DOOR = "door"
    WATER = "water"


class DeviceStatus(StrEnum):
    ACTIVE = "active"
    MAINTENANCE = "maintenance"
    RETIRED = "retired"


@dataclass(frozen=True)
class Device:
    id: int
    serial: str
    kind: DeviceKind
    resident_id: int | None
    caller_e164: str | None = field(repr=False)
    dc09_account: str | None
    cloud_id: str | None
    heartbeat_interval_s: int
    last_seen_at: dt.datetime | None
    battery_percent: int | None
    status: DeviceStatus
    false_alarms: int
    installed_at: dt.datetime


@dataclass(frozen=True)
class DeviceInput:
    """What an installer records; last-seen, battery and false alarms come from the device itself."""

    serial: str
    kind: DeviceKind
    resident_id: int | None = None
    caller_e164: str | None = field(default=None, repr=False)
    dc09_account: str | None = None
    cloud_id: str | None = None
    heartbeat_interval_s: int = 86400
    status: DeviceStatus = DeviceStatus.ACTIVE

    @classmethod
    def build(
        cls,
        book: PhoneBook,
        *,
        serial: str,
        kind: str,
        resident_id: int | None = None,
        caller: str | None = None,
        dc09_account: str | None = None,
        cloud_id: str | None = None,
        heartbeat_interval_s: str | int | None = None,
        status: str | None = None,
    ) -> DeviceInput:
        checker = Checker()
        serial_ = checker.check("serial", lambda: required(serial, "the serial number"))
        kind_ = checker.check("kind", lambda: parse_choice(kind, DeviceKind))
        caller_ = checker.check("caller", lambda: book.normalise(caller or "") if clean(caller) else None)
        interval = checker.check(
            "heartbeat_interval_s", lambda: parse_int(heartbeat_interval_s, 60, 31 * 86400, default=86400)
        )
        status_ = checker.check(
            "status", lambda: parse_choice(status, DeviceStatus, default=DeviceStatus.ACTIVE)
        )
        checker.done()
        assert serial_ is not None
        assert kind_ is not None
        assert interval is not None
        assert status_ is not None
        return cls(
            serial=serial_,
            kind=kind_,
            resident_id=resident_id,
            caller_e164=caller_,
            dc09_account=clean(dc09_account) or None,
            cloud_id=clean(cloud_id) or None,
            heartbeat_interval_s=interval,
            status=status_,
        )


COLUMNS = """id, serial, kind, resident_id, caller_e164, dc09_account, cloud_id, heartbeat_interval_s,
             last_seen_at, battery_percent, status, false_alarms, installed_at"""


def device_from_row(row: asyncpg.Record) -> Device:
    return Device(
        id=row["id"],
        serial=row["serial"],
        kind=DeviceKind(row["kind"]),
        resident_id=row["resident_id"],
        caller_e164=row["caller_e164"],
        dc09_account=row["dc09_account"],
        cloud_id=row["cloud_id"],
        heartbeat_interval_s=row["heartbeat_interval_s"],
        last_seen_at=row["last_seen_at"],
        battery_percent=row["battery_percent"],
        status=DeviceStatus(row["status"]),
        false_alarms=row["false_alarms"],
        installed_at=row["installed_at"],
    )


async def _one(conn: Conn, where: str, value: str) -> Device | None:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM devices WHERE {where} = $1", value)
    return device_from_row(row) if row else None


async def device_by_caller(conn: Conn, e164: str) -> Device | None:
    return await _one(conn, "caller_e164", e164)


async def device_by_dc09_account(conn: Conn, account: str) -> Device | None:
    return await _one(conn, "dc09_account", account)


async def device_by_cloud_id(conn: Conn, cloud_id: str) -> Device | None:
    return await _one(conn, "cloud_id", cloud_id)


async def device_by_serial(conn: Conn, serial: str) -> Device | None:
    return await _one(conn, "serial", serial)


async def devices_of_resident(conn: Conn, resident_id: int) -> list[Device]:
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM devices WHERE resident_id = $1 ORDER BY kind, id", resident_id
    )
    return [device_from_row(r) for r in rows]


# The WHERE on DO UPDATE makes an identical re-upsert return no row, which is how "unchanged" is seen.
UPSERT_DEVICE = f"""
INSERT INTO devices (serial, kind, resident_id, caller_e164, dc09_account, cloud_id,
                     heartbeat_interval_s, status)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (serial) DO UPDATE SET
    kind = EXCLUDED.kind, resident_id = EXCLUDED.resident_id, caller_e164 = EXCLUDED.caller_e164,
    dc09_account = EXCLUDED.dc09_account, cloud_id = EXCLUDED.cloud_id,
    heartbeat_interval_s = EXCLUDED.heartbeat_interval_s, status = EXCLUDED.status
WHERE (devices.kind, devices.resident_id, devices.caller_e164, devices.dc09_account, devices.cloud_id,
       devices.heartbeat_interval_s, devices.status)
      IS DISTINCT FROM
      (EXCLUDED.kind, EXCLUDED.resident_id, EXCLUDED.caller_e164, EXCLUDED.dc09_account,
       EXCLUDED.cloud_id, EXCLUDED.heartbeat_interval_s, EXCLUDED.status)
RETURNING {COLUMNS}
"""

_UNIQUE_FIELDS = {
    "devices_caller_e164_key": ("caller", "this caller number belongs to another device"),
    "devices_dc09_account_key": ("dc09_account", "this DC-09 account belongs to another device"),
    "devices_cloud_id_key": ("cloud_id", "this cloud id belongs to another device"),
}


async def upsert_device(conn: Conn, device: DeviceInput) -> tuple[Device, bool]:
    """Create or update the device with this serial; the flag says whether anything changed."""
    try:
        async with conn.transaction():
            row = await conn.fetchrow(
                UPSERT_DEVICE,
                device.serial,
                device.kind.value,
                device.resident_id,
                device.caller_e164,
                device.dc09_account,
                device.cloud_id,
                device.heartbeat_interval_s,
                device.status.value,
            )
    except asyncpg.UniqueViolationError as exc:
        field_, reason = _UNIQUE_FIELDS.get(exc.constraint_name or "", ("serial", "already in use"))
        raise InvalidInput.one(field_, reason) from None
    except asyncpg.ForeignKeyViolationError:
        raise InvalidInput.one("resident_id", f"no resident {device.resident_id}") from None
    if row is not None:
        return device_from_row(row), True
    existing = await device_by_serial(conn, device.serial)
    assert existing is not None
    return existing, False
