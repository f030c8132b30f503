"""Ademco Contact ID, as Asterisk's AlarmReceiver records it: pure functions, no I/O.

An event is 16 DTMF digits, `ACCT MT Q XYZ GG CCC S`: account (4), message type
(18 or 98), qualifier (1 new, 3 restore, 6 still present), event code (3), group
or partition (2), zone or user (3), checksum (1). The digits weigh their value,
0 weighs 10, and the sum of all sixteen is a multiple of 15.

Hex digits B-F travel as the extra DTMF tones; AlarmReceiver writes them as it
heard them and checks the sum with `* = 11, # = 12, A = 13, B = 14, C = 15`
(app_alarmreceiver.c). We read the same notation, since every string here came
through it, and also accept D, E and F as plain hex (13, 14, 15); B and C mean
what Asterisk means by them, not hex 11 and 12.

The AlarmReceiver event file (what `eventcmd` posts) is parsed by
`parse_event_file`: a `[metadata]` block (PROTOCOL, CALLINGFROM, TIMESTAMP, ...)
and one event per line under `[events]`, or `event=` lines with `no_group_meta`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from telephony.alarms.kinds import AlarmKind, Qualifier

WEIGHTS = {
    **{str(d): d for d in range(1, 10)},
    "0": 10,
    "*": 11,
    "#": 12,
    "A": 13,
    "B": 14,
    "C": 15,
    "D": 13,
    "E": 14,
    "F": 15,
}
MESSAGE_TYPES = ("18", "98")
QUALIFIERS = {"1": Qualifier.NEW, "3": Qualifier.RESTORE, "6": Qualifier.STATUS}
# The largest thing anyone should post as an event file: a panel dumps a few dozen events a call.
MAX_EVENT_FILE = 64 * 1024
MAX_EVENTS = 200


class ContactIdError(ValueError):
    """Not a Contact ID event; the message says which part is wrong."""


# Event code → (kind, description). The common table (SIA DC-05); ranges not named
# here fall back by their hundred (see `classify`).
EVENTS: dict[str, tuple[AlarmKind, str]] = {
    "100": (AlarmKind.MEDICAL, "medical"),
    "101": (AlarmKind.SOS, "personal emergency"),
    "102": (AlarmKind.INACTIVITY, "fail to report in"),
    "110": (AlarmKind.FIRE, "fire"),
    "111": (AlarmKind.FIRE, "smoke"),
    "112": (AlarmKind.FIRE, "combustion"),
    "113": (AlarmKind.FIRE, "water flow"),
    "114": (AlarmKind.FIRE, "heat"),
    "115": (AlarmKind.FIRE, "pull station"),
    "116": (AlarmKind.FIRE, "duct"),
    "117": (AlarmKind.FIRE, "flame"),
    "118": (AlarmKind.FIRE, "near alarm"),
    "120": (AlarmKind.SOS, "panic"),
    "121": (AlarmKind.SOS, "duress"),
    "122": (AlarmKind.SOS, "silent panic"),
    "123": (AlarmKind.SOS, "audible panic"),
    "124": (AlarmKind.SOS, "duress, access granted"),
    "125": (AlarmKind.SOS, "duress, egress granted"),
    "130": (AlarmKind.OTHER, "burglary"),
    "131": (AlarmKind.OTHER, "perimeter"),
    "132": (AlarmKind.OTHER, "interior"),
    "133": (AlarmKind.OTHER, "24 hour"),
    "134": (AlarmKind.OTHER, "entry/exit"),
    "135": (AlarmKind.OTHER, "day/night"),
    "136": (AlarmKind.OTHER, "outdoor"),
    "137": (AlarmKind.TAMPER, "tamper"),
    "138": (AlarmKind.OTHER, "near alarm"),
    "139": (AlarmKind.OTHER, "intrusion verifier"),
    "140": (AlarmKind.OTHER, "general alarm"),
    "141": (AlarmKind.TROUBLE, "polling loop open"),
    "142": (AlarmKind.TROUBLE, "polling loop short"),
    "143": (AlarmKind.TROUBLE, "expansion module failure"),
    "144": (AlarmKind.TAMPER, "sensor tamper"),
    "145": (AlarmKind.TAMPER, "expansion module tamper"),
    "146": (AlarmKind.OTHER, "silent burglary"),
    "147": (AlarmKind.TROUBLE, "sensor supervision failure"),
    "150": (AlarmKind.OTHER, "24 hour non-burglary"),
    "151": (AlarmKind.GAS, "gas detected"),
    "152": (AlarmKind.OTHER, "refrigeration"),
    "153": (AlarmKind.OTHER, "loss of heat"),
    "154": (AlarmKind.WATER, "water leakage"),
    "155": (AlarmKind.OTHER, "foil break"),
    "156": (AlarmKind.TROUBLE, "day trouble"),
    "157": (AlarmKind.TROUBLE, "low bottled gas level"),
    "158": (AlarmKind.OTHER, "high temperature"),
    "159": (AlarmKind.OTHER, "low temperature"),
    "161": (AlarmKind.OTHER, "loss of air flow"),
    "162": (AlarmKind.GAS, "carbon monoxide detected"),
    "163": (AlarmKind.OTHER, "tank level"),
    "300": (AlarmKind.TROUBLE, "system trouble"),
    "301": (AlarmKind.MAINS_LOSS, "AC loss"),
    "302": (AlarmKind.LOW_BATTERY, "low system battery"),
    "303": (AlarmKind.TROUBLE, "RAM checksum bad"),
    "304": (AlarmKind.TROUBLE, "ROM checksum bad"),
    "305": (AlarmKind.STATUS, "system reset"),
    "306": (AlarmKind.STATUS, "panel programming changed"),
    "307": (AlarmKind.TROUBLE, "self-test failure"),
    "308": (AlarmKind.TROUBLE, "system shutdown"),
    "309": (AlarmKind.LOW_BATTERY, "battery test failure"),
    "310": (AlarmKind.TROUBLE, "ground fault"),
    "311": (AlarmKind.LOW_BATTERY, "battery missing or dead"),
    "312": (AlarmKind.TROUBLE, "power supply overcurrent"),
    "313": (AlarmKind.STATUS, "engineer reset"),
    "350": (AlarmKind.TROUBLE, "communication trouble"),
    "351": (AlarmKind.TROUBLE, "telco 1 fault"),
    "352": (AlarmKind.TROUBLE, "telco 2 fault"),
    "354": (AlarmKind.TROUBLE, "failure to communicate event"),
    "380": (AlarmKind.TROUBLE, "sensor trouble"),
    "381": (AlarmKind.TROUBLE, "loss of supervision, RF"),
    "382": (AlarmKind.TROUBLE, "loss of supervision, RPM"),
    "383": (AlarmKind.TAMPER, "sensor tamper"),
    "384": (AlarmKind.LOW_BATTERY, "RF low battery"),
    "389": (AlarmKind.TROUBLE, "sensor self-test failure"),
    "400": (AlarmKind.STATUS, "open/close"),
    "401": (AlarmKind.STATUS, "open/close by user"),
    "406": (AlarmKind.CANCEL, "cancel"),
    "407": (AlarmKind.STATUS, "remote arm/disarm"),
    "408": (AlarmKind.STATUS, "quick arm"),
    "409": (AlarmKind.STATUS, "keyswitch open/close"),
    "570": (AlarmKind.STATUS, "zone bypass"),
    "601": (AlarmKind.TEST, "manual test report"),
    "602": (AlarmKind.TEST, "periodic test report"),
    "603": (AlarmKind.TEST, "periodic RF transmission"),
    "604": (AlarmKind.TEST, "fire test"),
    "605": (AlarmKind.STATUS, "status report to follow"),
    "606": (AlarmKind.STATUS, "listen-in to follow"),
    "607": (AlarmKind.TEST, "walk test mode"),
    "608": (AlarmKind.TEST, "periodic test, system trouble present"),
    "611": (AlarmKind.TEST, "point tested OK"),
    "612": (AlarmKind.TEST, "point not tested"),
    "616": (AlarmKind.STATUS, "service request"),
    "625": (AlarmKind.STATUS, "time/date reset"),
    "627": (AlarmKind.STATUS, "program mode entry"),
    "628": (AlarmKind.STATUS, "program mode exit"),
}


def classify(code: str) -> tuple[AlarmKind, str]:
    """The kind of an event code; an unknown 1xx is still an alarm, so it is never dropped."""
    known = EVENTS.get(code)
    if known is not None:
        return known
    match code[:1]:
        case "1":
            return AlarmKind.OTHER, "alarm"
        case "2" | "3":
            return AlarmKind.TROUBLE, "trouble"
        case _:
            return AlarmKind.STATUS, "event"


@dataclass(frozen=True)
class ContactIdEvent:
    account: str
    message_type: str
    qualifier: Qualifier
    code: str
    group: str
    zone: str
    kind: AlarmKind
    description: str
    raw: str


def checksum_ok(digits: str) -> bool:
    return sum(WEIGHTS[d] for d in digits) % 15 == 0


def check_digit(first15: str) -> str:
    """The 16th digit that makes the sum a multiple of 15 (as a panel would send it)."""
    remainder = sum(WEIGHTS[d] for d in first15) % 15
    need = (15 - remainder) % 15 or 15
    return {10: "0", 11: "*", 12: "#", 13: "A", 14: "B", 15: "C"}.get(need, str(need))


def parse_contact_id(text: str) -> ContactIdEvent:
    """One event string (spaces allowed between groups); ContactIdError naming the bad part."""
    if len(text) > 64:
        raise ContactIdError("event: longer than any Contact ID event")
    digits = "".join(text.split()).upper()
    if len(digits) != 16:
        raise ContactIdError(f"event: expected 16 digits, got {len(digits)}")
    bad = next((c for c in digits if c not in WEIGHTS), None)
    if bad is not None:
        raise ContactIdError(f"event: {bad!r} is not a DTMF digit")
    if not checksum_ok(digits):
        raise ContactIdError("checksum: the digits do not add up to a multiple of 15")
    account, message_type, qualifier = digits[0:4], digits[4:6], digits[6]
    code, group, zone = digits[7:10], digits[10:12], digits[12:15]
    if message_type not in MESSAGE_TYPES:
        raise ContactIdError(f"message type: expected 18 or 98, got {message_type}")
    if qualifier not in QUALIFIERS:
        raise ContactIdError(f"qualifier: expected 1, 3 or 6, got {qualifier}")
    if not code.isdigit():
        raise ContactIdError(f"event code: expected 3 decimal digits, got {code}")
    kind, description = classify(code)
    return ContactIdEvent(
        account=account,
        message_type=message_type,
        qualifier=QUALIFIERS[qualifier],
        code=code,
        group=group,
        zone=zone,
        kind=kind,
        description=description,
        raw=digits,
    )


def build_contact_id(
    account: str,
    code: str,
    *,
    qualifier: str = "1",
    group: str = "01",
    zone: str = "001",
    message_type: str = "18",
) -> str:
    """The 16 digits a panel would send (for the simulator and tests)."""
    first15 = f"{account}{message_type}{qualifier}{code}{group}{zone}"
    if len(first15) != 15 or any(c not in WEIGHTS for c in first15):
        raise ContactIdError("cannot build an event from these parts")
    return first15 + check_digit(first15)


_ADM_CID = re.compile(r"^([136])(\d{3}) ([0-9A-Fa-f]{2}) ([0-9A-Fa-f]{3})$")


def parse_adm_cid(data: str, account: str) -> ContactIdEvent:
    """The Contact ID inside a DC-09 `ADM-CID` block: `QEEE GG ZZZ` (no message type, no checksum)."""
    match = _ADM_CID.match(data)
    if match is None:
        raise ContactIdError(f"ADM-CID: expected 'QEEE GG ZZZ', got {data[:40]!r}")
    qualifier, code, group, zone = match.groups()
    kind, description = classify(code)
    return ContactIdEvent(
        account=account,
        message_type="18",
        qualifier=QUALIFIERS[qualifier],
        code=code,
        group=group.upper(),
        zone=zone.upper(),
        kind=kind,
        description=description,
        raw=data,
    )


@dataclass(frozen=True)
class EventFile:
    protocol: str
    calling_from: str | None
    caller_name: str | None
    timestamp: str | None
    events: list[ContactIdEvent]


def parse_event_file(text: str) -> EventFile:
    """An AlarmReceiver event file; ContactIdError names the line that is wrong."""
    if len(text) > MAX_EVENT_FILE:
        raise ContactIdError("body: larger than an event file")
    meta: dict[str, str] = {}
    raw_events: list[tuple[int, str]] = []
    section = "metadata"
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
            continue
        key, sep, value = line.partition("=")
        if sep and key.strip().lower() == "event":
            raw_events.append((number, value.strip()))
        elif sep and section == "metadata":
            meta[key.strip().upper()] = value.strip()
        elif section == "events":
            raw_events.append((number, line))
        else:
            raise ContactIdError(f"line {number}: neither metadata nor an event")
    protocol = meta.get("PROTOCOL", "ADEMCO_CONTACT_ID")
    if protocol != "ADEMCO_CONTACT_ID":
        raise ContactIdError(f"PROTOCOL: only ADEMCO_CONTACT_ID is read, got {protocol[:40]!r}")
    if not raw_events:
        raise ContactIdError("events: the file holds no event")
    if len(raw_events) > MAX_EVENTS:
        raise ContactIdError(f"events: more than {MAX_EVENTS} in one file")
    events = []
    for number, raw in raw_events:
        try:
            events.append(parse_contact_id(raw))
        except ContactIdError as exc:
            raise ContactIdError(f"line {number}: {exc}") from None

    def known(key: str) -> str | None:
        value = meta.get(key)
        return value if value and value != "<unknown>" else None

    return EventFile(
        protocol=protocol,
        calling_from=known("CALLINGFROM"),
        caller_name=known("CALLERNAME"),
        timestamp=known("TIMESTAMP"),
        events=events,
    )
