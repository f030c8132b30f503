"""SIA DC-09 frames: decode what a unit sends, encode what the receiver answers. Pure, no I/O.

    <LF><crc><0LLL>"<id>"<seq 4>[R<rcvr>]L<line>#<acct>[<data>][<xdata>]..[_HH:MM:SS,MM-DD-YYYY]<CR>

CRC-16/ARC and the length (hexadecimal) cover the bytes from the opening `"` to
the last byte before <CR>. A leading `*` on the id means everything after `[` is
hex AES-CBC (zero IV, key 128/192/256 bits) over `<pad>|<data>][<xdata>].._<time>`.

What the receiver must do with a frame follows from the exception `decode_frame`
raises (see `Refusal.answer`): a bad CRC gets no answer at all, a frame that is
CRC-valid but cannot be read or has a timestamp outside the window gets a NAK
carrying our time, an id token or encryption we do not take gets a DUH.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from telephony.alarms.contact_id import ContactIdError, ContactIdEvent, parse_adm_cid
from telephony.alarms.kinds import AlarmKind, Qualifier

LF, CR = b"\n", b"\r"
# 3 hex digits of length, plus LF, CRC, length and CR: nothing longer is a frame.
MAX_BODY = 0xFFF
MAX_FRAME = MAX_BODY + 10
ZERO_IV = bytes(16)
TIME_FORMAT = "%H:%M:%S,%m-%d-%Y"
SUPPORTED_TOKENS = ("SIA-DCS", "ADM-CID", "NULL")
# What a receiver answers (read by the simulator and the tests).
ANSWER_TOKENS = ("ACK", "NAK", "DUH")

KeyLookup = Callable[[str], bytes | None]


class Answer(StrEnum):
    ACK = "ack"
    NAK = "nak"
    DUH = "duh"
    NONE = "none"


class Refusal(Exception):
    """A frame the receiver does not accept; `answer` says how the unit is told."""

    answer = Answer.NAK


class BadCrc(Refusal):
    """Annex C: a frame whose CRC does not match (or cannot be read) is not answered."""

    answer = Answer.NONE


class Unreadable(Refusal):
    answer = Answer.NAK


class TimestampOutOfWindow(Refusal):
    answer = Answer.NAK


class Unsupported(Refusal):
    """Understood as DC-09, but a token or an encrypted account we cannot take."""

    answer = Answer.DUH

    def __init__(self, message: str, header: Header) -> None:
        super().__init__(message)
        self.header = header


def _crc16_arc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


# Every frame in and every answer out is checked or signed: a byte at a time from a table is
# eight times less work than a bit at a time, which showed in a surge's profile.
_CRC16_ARC = _crc16_arc_table()


def crc16_arc(data: bytes) -> int:
    """CRC-16/ARC: polynomial 0x8005 reflected (0xA001), initial value 0; check('123456789') = 0xBB3D."""
    crc = 0
    table = _CRC16_ARC
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


@dataclass(frozen=True)
class Header:
    """The clear part of a frame: what every answer echoes."""

    token: str
    encrypted: bool
    sequence: str
    receiver: str | None
    line: str
    account: str


@dataclass(frozen=True)
class Frame:
    header: Header
    data: str
    extended: tuple[str, ...]
    timestamp: dt.datetime | None
    # the message as text, decrypted, less padding (what is stored)
    text: str

    @property
    def digest(self) -> str:
        """What the message says, less timestamp and padding: a resend has the same digest."""
        h = self.header
        said = "\x1f".join((h.token, h.account.upper(), self.data, *self.extended))
        return hashlib.sha256(said.encode("utf-8", "replace")).hexdigest()


_HEADER = re.compile(
    r'^"(?P<star>\*?)(?P<token>[A-Z0-9-]{1,16})"(?P<seq>\d{4})(?:R(?P<rcvr>[0-9A-Fa-f]{1,6}))?'
    r"L(?P<line>[0-9A-Fa-f]{1,6})#(?P<acct>[0-9A-Fa-f]{3,16})\[(?P<rest>.*)$",
    re.DOTALL,
)
_CONTENT = re.compile(
    r"^(?P<data>[^\[\]]*)\](?P<xdata>(?:\[[^\[\]]*\])*)"
    r"(?:_(?P<ts>\d\d:\d\d:\d\d,\d\d-\d\d-\d{4}))?$",
    re.DOTALL,
)


def parse_key(text: str) -> bytes:
    """A hex AES key of 128, 192 or 256 bits; ValueError otherwise."""
    key = bytes.fromhex(text.strip())
    if len(key) not in (16, 24, 32):
        raise ValueError("a DC-09 key is 32, 48 or 64 hex digits")
    return key


def _aes(key: bytes) -> Cipher[modes.CBC]:
    return Cipher(algorithms.AES(key), modes.CBC(ZERO_IV))


def decode_frame(
    raw: bytes,
    *,
    key_for: KeyLookup,
    now: dt.datetime,
    window: tuple[float, float] = (40.0, 20.0),
    tokens: tuple[str, ...] = SUPPORTED_TOKENS,
) -> Frame:
    """One frame, LF to CR; raises a `Refusal` whose `answer` tells the unit what happened."""
    if len(raw) > MAX_FRAME or len(raw) < 10 or raw[:1] != LF or raw[-1:] != CR:
        raise BadCrc("not framed LF ... CR")
    crc_text, length_text, body = raw[1:5], raw[5:9], raw[9:-1]
    try:
        crc = int(crc_text.decode("ascii"), 16)
        length = int(length_text.decode("ascii"), 16)
    except (UnicodeDecodeError, ValueError):
        raise BadCrc("the CRC or length field is not hex") from None
    if not all(c in b"0123456789ABCDEFabcdef" for c in crc_text + length_text):
        raise BadCrc("the CRC or length field is not hex")
    if crc16_arc(body) != crc:
        raise BadCrc("CRC mismatch")
    if length != len(body):
        raise Unreadable(f"length field says {length}, the frame has {len(body)}")
    text = body.decode("utf-8", "replace")
    match = _HEADER.match(text)
    if match is None:
        raise Unreadable("no id token, sequence, line and account")
    header = Header(
        token=match["token"],
        encrypted=bool(match["star"]),
        sequence=match["seq"],
        receiver=match["rcvr"],
        line=match["line"],
        account=match["acct"],
    )
    rest = match["rest"]
    if header.token not in tokens:
        raise Unsupported(f"id token {header.token} is not supported", header)
    if header.encrypted:
        key = key_for(header.account.upper())
        if key is None:
            raise Unsupported(f"account {header.account} sends encrypted and has no key here", header)
        rest = _decrypt(rest, key)
    content = _CONTENT.match(rest)
    if content is None:
        raise Unreadable("the data blocks are not [..][..]_time")
    timestamp = None
    if content["ts"]:
        try:
            timestamp = dt.datetime.strptime(content["ts"], TIME_FORMAT).replace(tzinfo=dt.UTC)
        except ValueError:
            raise Unreadable("the timestamp is not a time") from None
        before, after = window
        if not now - dt.timedelta(seconds=before) <= timestamp <= now + dt.timedelta(seconds=after):
            raise TimestampOutOfWindow(f"timestamp {timestamp.isoformat()} is outside the window")
    elif header.encrypted:
        # The timestamp is what makes an encrypted frame impossible to replay; one without it is refused.
        raise Unreadable("an encrypted frame must carry a timestamp")
    extended = tuple(x for x in re.findall(r"\[([^\[\]]*)\]", content["xdata"]))
    shown = text[: match.start("rest")] + rest if header.encrypted else text
    return Frame(header=header, data=content["data"], extended=extended, timestamp=timestamp, text=shown)


def _decrypt(hex_text: str, key: bytes) -> str:
    if not hex_text or len(hex_text) % 32 or not re.fullmatch(r"[0-9A-Fa-f]+", hex_text):
        raise Unreadable("the encrypted part is not whole AES blocks in hex")
    decryptor = _aes(key).decryptor()
    plain = decryptor.update(bytes.fromhex(hex_text)) + decryptor.finalize()
    bar = plain.find(b"|")
    if bar < 0:
        raise Unreadable("no pad separator after decryption (wrong key?)")
    return plain[bar + 1 :].decode("utf-8", "replace")


def _encrypt(content: str, key: bytes, pad: bytes | None = None) -> str:
    payload = b"|" + content.encode("utf-8")
    size = 16 - len(payload) % 16
    if pad is None:
        # Pseudo-random pad, 1-16 bytes, never a "|" (the receiver splits on the first one).
        pad = bytes(b if b != 0x7C else 0x7B for b in secrets.token_bytes(size))
    if len(pad) != size:
        raise ValueError(f"the pad must be {size} bytes here")
    encryptor = _aes(key).encryptor()
    return (encryptor.update(pad + payload) + encryptor.finalize()).hex().upper()


def frame_bytes(body: str) -> bytes:
    """LF, CRC, length and CR around a body that starts at its opening quote."""
    data = body.encode("utf-8")
    if len(data) > MAX_BODY:
        raise ValueError("a DC-09 frame body is at most 4095 bytes")
    return LF + f"{crc16_arc(data):04X}{len(data):04X}".encode("ascii") + data + CR


def stamp(at: dt.datetime) -> str:
    return "_" + at.astimezone(dt.UTC).strftime(TIME_FORMAT)


def encode_message(
    token: str,
    sequence: int | str,
    account: str,
    data: str = "",
    *,
    receiver: str | None = None,
    line: str = "0",
    extended: tuple[str, ...] = (),
    timestamp: dt.datetime | None = None,
    key: bytes | None = None,
    pad: bytes | None = None,
) -> bytes:
    """A whole frame; with `key`, the encrypted form `"*TOKEN"`. Units send these; so do our answers."""
    seq = sequence if isinstance(sequence, str) else f"{sequence:04d}"
    head = f'"{"*" if key else ""}{token}"{seq}' + (f"R{receiver}" if receiver is not None else "")
    head += f"L{line}#{account}["
    content = data + "]" + "".join(f"[{x}]" for x in extended) + (stamp(timestamp) if timestamp else "")
    if key is None:
        return frame_bytes(head + content)
    return frame_bytes(head + _encrypt(content, key, pad))


def ack(header: Header, now: dt.datetime, key: bytes | None = None, pad: bytes | None = None) -> bytes:
    """ACK echoing sequence, receiver, line and account; encrypted (with our time) when the frame was."""
    return encode_message(
        "ACK",
        header.sequence,
        header.account,
        receiver=header.receiver,
        line=header.line,
        timestamp=now,
        key=key if header.encrypted else None,
        pad=pad,
    )


def duh(header: Header) -> bytes:
    return encode_message("DUH", header.sequence, header.account, receiver=header.receiver, line=header.line)


def nak(now: dt.datetime) -> bytes:
    """The standard's NAK: sequence 0000, R0 L0 A0 and our time (the unit resyncs); never encrypted."""
    return frame_bytes(f'"NAK"0000R0L0A0[]{stamp(now)}')


# -- SIA-DCS data ---------------------------------------------------------------------------

# Two-letter SIA event codes (SIA DC-03) and what they are; the last letter says
# alarm (A), restore (R), trouble (T) and so on.
SIA_CODES: dict[str, tuple[AlarmKind, Qualifier]] = {
    "PA": (AlarmKind.SOS, Qualifier.NEW),
    "PR": (AlarmKind.SOS, Qualifier.RESTORE),
    "HA": (AlarmKind.SOS, Qualifier.NEW),
    "HR": (AlarmKind.SOS, Qualifier.RESTORE),
    "QA": (AlarmKind.SOS, Qualifier.NEW),
    "QR": (AlarmKind.SOS, Qualifier.RESTORE),
    "MA": (AlarmKind.MEDICAL, Qualifier.NEW),
    "MR": (AlarmKind.MEDICAL, Qualifier.RESTORE),
    "FA": (AlarmKind.FIRE, Qualifier.NEW),
    "FR": (AlarmKind.FIRE, Qualifier.RESTORE),
    "GA": (AlarmKind.GAS, Qualifier.NEW),
    "GR": (AlarmKind.GAS, Qualifier.RESTORE),
    "WA": (AlarmKind.WATER, Qualifier.NEW),
    "WR": (AlarmKind.WATER, Qualifier.RESTORE),
    "TA": (AlarmKind.TAMPER, Qualifier.NEW),
    "TR": (AlarmKind.TAMPER, Qualifier.RESTORE),
    "BA": (AlarmKind.OTHER, Qualifier.NEW),
    "BR": (AlarmKind.OTHER, Qualifier.RESTORE),
    "AT": (AlarmKind.MAINS_LOSS, Qualifier.NEW),
    "AR": (AlarmKind.MAINS_LOSS, Qualifier.RESTORE),
    "YT": (AlarmKind.LOW_BATTERY, Qualifier.NEW),
    "YR": (AlarmKind.LOW_BATTERY, Qualifier.RESTORE),
    "XT": (AlarmKind.LOW_BATTERY, Qualifier.NEW),
    "XR": (AlarmKind.LOW_BATTERY, Qualifier.RESTORE),
    "RP": (AlarmKind.TEST, Qualifier.NEW),
    "RX": (AlarmKind.TEST, Qualifier.NEW),
    "OC": (AlarmKind.CANCEL, Qualifier.NEW),
}


@dataclass(frozen=True)
class SiaEvent:
    code: str
    zone: str
    kind: AlarmKind
    qualifier: Qualifier
    text: str = ""
    modifiers: dict[str, str] = field(default_factory=dict)


_SIA_ITEM = re.compile(
    r"^(?P<mods>(?:(?:ri|id|pi|ti|ai)[0-9A-Za-z:]{1,8})*)(?P<code>[A-Z]{2})(?P<zone>[0-9A-Za-z]{0,6})"
    r"(?:\^(?P<text>[^\^]*)\^)?$"
)
_MODIFIER = re.compile(r"(ri|id|pi|ti|ai)([0-9A-Za-z:]{1,8}?)(?=ri|id|pi|ti|ai|$)")


def _sia_kind(code: str) -> tuple[AlarmKind, Qualifier]:
    known = SIA_CODES.get(code)
    if known is not None:
        return known
    # Unknown codes by their last letter: an unknown alarm is still an alarm.
    match code[1]:
        case "A":
            return AlarmKind.OTHER, Qualifier.NEW
        case "R" | "H":
            return AlarmKind.OTHER, Qualifier.RESTORE
        case "T":
            return AlarmKind.TROUBLE, Qualifier.NEW
        case _:
            return AlarmKind.STATUS, Qualifier.STATUS


def strip_account(data: str) -> str:
    """`#ACCT|rest` → `rest`: the account repeated inside the data block."""
    if data.startswith("#") and "|" in data:
        return data.split("|", 1)[1]
    return data


def parse_sia_events(data: str) -> list[SiaEvent]:
    """`#acct|Nri1/PA501/MA502` → one event per `/`-separated item; Unreadable when it is not SIA."""
    body = strip_account(data)
    if not body.startswith("N"):
        raise Unreadable("SIA-DCS data must start with N (new event)")
    events = []
    for item in body[1:].split("/"):
        if not item:
            continue
        match = _SIA_ITEM.match(item)
        if match is None:
            raise Unreadable(f"SIA item {item[:30]!r} is not [modifiers]CODE[zone]")
        kind, qualifier = _sia_kind(match["code"])
        modifiers = {m[0]: m[1] for m in _MODIFIER.findall(match["mods"])}
        events.append(SiaEvent(match["code"], match["zone"], kind, qualifier, match["text"] or "", modifiers))
    if not events:
        raise Unreadable("SIA-DCS data holds no event")
    return events


def parse_adm_cid_data(data: str, account: str) -> ContactIdEvent:
    try:
        return parse_adm_cid(strip_account(data), account)
    except ContactIdError as exc:
        raise Unreadable(str(exc)) from None
