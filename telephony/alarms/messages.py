"""What one sender delivered, as every intake adapter hands it over, and what became of it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from telephony.alarms.kinds import AlarmKind, AlarmSource, Outcome, Qualifier


class ReceiptConflict(Exception):
    """The sender reused an idempotency key for a different message."""


@dataclass(frozen=True)
class DeviceKey:
    """How the message names its device; at most one is set."""

    dc09_account: str | None = None
    cloud_id: str | None = None
    caller_e164: str | None = None


@dataclass(frozen=True)
class IncomingAlarm:
    kind: AlarmKind
    qualifier: Qualifier
    code: str
    zone: str | None = None
    partition: str | None = None
    description: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    sender_at: dt.datetime | None = None


@dataclass(frozen=True)
class Message:
    """What one sender delivered at once (a DC-09 frame, an event file, one POST)."""

    source: AlarmSource
    sender: str
    actor: str
    device: DeviceKey
    payload: str
    alarms: tuple[IncomingAlarm, ...]
    received_at: dt.datetime
    # None: no receipt (a supervision message stores nothing to repeat)
    receipt_key: str | None = None
    digest: str = ""
    # how long a receipt blocks a repeat; None: forever
    duplicate_window_seconds: float | None = None
    # a reused key with other content: a conflict (HTTP), or a new message (DC-09 wrap)
    reused_key_is_conflict: bool = False
    battery_percent: int | None = None
    integration_id: int | None = None


@dataclass(frozen=True)
class AlarmResult:
    alarm_id: int
    kind: AlarmKind
    outcome: Outcome
    alert_id: int | None


@dataclass(frozen=True)
class IntakeResult:
    duplicate: bool
    device_id: int | None
    alarms: tuple[AlarmResult, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "duplicate": self.duplicate,
            "device_id": self.device_id,
            "alarms": [
                {"id": a.alarm_id, "kind": a.kind.value, "outcome": a.outcome.value, "alert_id": a.alert_id}
                for a in self.alarms
            ],
        }


@dataclass(frozen=True)
class HeardDevice:
    """The device that sent an alarm, and whose it is."""

    id: int
    resident_id: int | None
