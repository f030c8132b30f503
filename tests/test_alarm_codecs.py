"""The three parsers without sockets: byte-exact vectors, and hypothesis for anything else.

DC-09 vectors are the public test vectors of Swissdotnet's SIA-DC-09 library (shared/notes/dc09.md).
"""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telephony.alarms import dc09
from telephony.alarms.contact_id import (
    WEIGHTS,
    ContactIdError,
    build_contact_id,
    parse_contact_id,
    parse_event_file,
)
from telephony.alarms.http_api import cloud_alarm
from telephony.alarms.kinds import AlarmKind, Qualifier

KEY = bytes.fromhex("ABCDABCDABCDABCDABCDABCDABCDABCD")
NOTHING: dict[str, bytes] = {}
NO_KEYS = NOTHING.get
WIDE = (10**9, 10**9)


def at(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, dc09.TIME_FORMAT).replace(tzinfo=dt.UTC)


# -- Contact ID ---------------------------------------------------------------------------


def test_contact_id_event_as_alarmreceiver_records_it() -> None:
    event = parse_contact_id("1234 18 1 101 01 015 " + build_contact_id("1234", "101", zone="015")[-1])
    assert (event.account, event.qualifier, event.code, event.group, event.zone) == (
        "1234",
        Qualifier.NEW,
        "101",
        "01",
        "015",
    )
    assert event.kind is AlarmKind.SOS
    assert parse_contact_id(build_contact_id("1234", "301", qualifier="3")).qualifier is Qualifier.RESTORE
    assert parse_contact_id(build_contact_id("1234", "602", zone="000")).kind is AlarmKind.TEST
    # 0 weighs 10, the DTMF extras their Asterisk weights: this sums to 60.
    assert sum(WEIGHTS[d] for d in "1234181131000105") % 15 != 0
    assert parse_contact_id(build_contact_id("B234", "151")).kind is AlarmKind.GAS


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("123418110101015", "16 digits"),
        ("1234181101010159", "checksum"),
        ("12341X1101010159", "DTMF"),
        (build_contact_id("1234", "101", message_type="17"), "message type"),
        (build_contact_id("1234", "101", qualifier="2"), "qualifier"),
    ],
)
def test_contact_id_refusals_name_the_part(text: str, part: str) -> None:
    with pytest.raises(ContactIdError, match=part):
        parse_contact_id(text)


def test_event_file_both_layouts() -> None:
    one = build_contact_id("1234", "101")
    two = build_contact_id("1234", "406", zone="003")
    grouped = (
        "\n\n[metadata]\n\nPROTOCOL=ADEMCO_CONTACT_ID\nCHECKSUM=yes\nCALLINGFROM=13900139000\n"
        "CALLERNAME=<unknown>\nTIMESTAMP=Mon Nov 23, 2026 @ 08:00:00 CST\n\n[events]\n\n"
        + one
        + "\n"
        + two
        + "\n"
    )
    flat = "PROTOCOL=ADEMCO_CONTACT_ID\nCALLINGFROM=<unknown>\nTIMESTAMP=x\n\nevent=" + one + "\n"
    parsed = parse_event_file(grouped)
    assert parsed.calling_from == "13900139000"
    assert parsed.caller_name is None
    assert [e.kind for e in parsed.events] == [AlarmKind.SOS, AlarmKind.CANCEL]
    assert parse_event_file(flat).calling_from is None
    with pytest.raises(ContactIdError, match="line 13"):
        parse_event_file(grouped.replace(one, one[:-1] + "0"))


@given(st.text(max_size=80))
def test_contact_id_any_text_parses_or_is_refused(text: str) -> None:
    try:
        event = parse_contact_id(text)
    except ContactIdError:
        return
    assert len(event.raw) == 16


@given(st.text(max_size=400))
def test_event_file_any_text_parses_or_is_refused(text: str) -> None:
    with contextlib.suppress(ContactIdError):
        parse_event_file(text)


digit = st.sampled_from("0123456789")


@given(
    st.text("0123456789", min_size=4, max_size=4),
    st.sampled_from(["100", "101", "120", "301", "602"]),
    st.sampled_from("136"),
    st.text("0123456789", min_size=3, max_size=3),
    st.integers(0, 15),
    digit,
)
def test_contact_id_round_trip_and_one_changed_digit_is_refused(
    account: str, code: str, qualifier: str, zone: str, position: int, replacement: str
) -> None:
    text = build_contact_id(account, code, qualifier=qualifier, zone=zone)
    event = parse_contact_id(text)
    assert (event.account, event.code, event.zone) == (account, code, zone)
    mutated = text[:position] + replacement + text[position + 1 :]
    if mutated != text:
        # One changed digit always changes the sum by 1-9 (never 15): the checksum catches it.
        with pytest.raises(ContactIdError):
            parse_contact_id(mutated)


# -- DC-09 ----------------------------------------------------------------------------------

VECTORS = [
    b'\nC26E0038"NULL"0000RC0FFDL1234#080027E62A64[]_13:40:27,06-22-2015\r',
    b'\n596E0024"NULL"0000RC0FFDL1234#080027E62A64[]\r',
    b'\n7C37006B"SIA-DCS"0000RC0FFDL1234#080027E62A64[#080027E62A64|NHB0003][X115000][X115000][X115000]'
    b"_13:53:11,06-22-2015\r",
]


def test_crc_check_value() -> None:
    assert dc09.crc16_arc(b"123456789") == 0xBB3D


def crc16_arc_bitwise(data: bytes) -> int:
    """The definition, a bit at a time: what the table-driven crc16_arc must equal."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


@given(st.binary(max_size=300))
def test_crc_table_equals_the_bitwise_definition(data: bytes) -> None:
    assert dc09.crc16_arc(data) == crc16_arc_bitwise(data)


@pytest.mark.parametrize("frame", VECTORS)
def test_public_vectors_decode(frame: bytes) -> None:
    decoded = dc09.decode_frame(frame, key_for=NO_KEYS, now=at("13:50:00,06-22-2015"), window=WIDE)
    assert (decoded.header.receiver, decoded.header.line, decoded.header.account) == (
        "C0FFD",
        "1234",
        "080027E62A64",
    )
    assert decoded.header.sequence == "0000"


def test_sia_vector_data_and_xdata() -> None:
    decoded = dc09.decode_frame(VECTORS[2], key_for=NO_KEYS, now=at("13:53:11,06-22-2015"))
    assert decoded.data == "#080027E62A64|NHB0003"
    assert decoded.extended == ("X115000",) * 3
    assert decoded.timestamp == at("13:53:11,06-22-2015")


def test_encrypted_vectors_and_answers_are_byte_exact() -> None:
    null = (
        b'\nCAC10064"*NULL"0000RC0FFDL1234#080027E62A64[70D7DC480FA7DC0DE428CE02447BA2E2981A161EA14CB7'
        b"80D2CD917208059E11\r"
    )
    decoded = dc09.decode_frame(null, key_for={"080027E62A64": KEY}.get, now=at("13:43:09,06-22-2015"))
    assert decoded.header.encrypted
    assert decoded.data == ""
    pad = bytes([0x12, 0xF1, 0xC2, 0x2A, 0x88, 0xEB, 0x44, 0x56, 0x79, 0xDA])
    header = dc09.Header("SIA-DCS", True, "0001", "5678", "1234", "080027E62A64")
    assert dc09.ack(header, at("16:08:12,04-14-2015"), KEY, pad=pad) == (
        b'\nE34C0062"*ACK"0001R5678L1234#080027E62A64[14F088FF5DCB19D1908069507EAB97C7CDB20F1C6EFA550BB5'
        b"9864D54B2DFA1C\r"
    )
    assert dc09.nak(at("16:09:09,04-14-2015")) == b'\n3C830025"NAK"0000R0L0A0[]_16:09:09,04-14-2015\r'
    plain = dc09.Header("SIA-DCS", False, "0001", None, "0", "080027E62A64")
    assert (
        dc09.ack(plain, at("16:07:07,04-14-2015"))
        == b'\n2729002E"ACK"0001L0#080027E62A64[]_16:07:07,04-14-2015\r'
    )


def test_refusals_and_their_answers() -> None:
    now = at("13:53:11,06-22-2015")
    bad_crc = VECTORS[2].replace(b"7C37", b"7C38")
    with pytest.raises(dc09.BadCrc):
        dc09.decode_frame(bad_crc, key_for=NO_KEYS, now=now)
    body = VECTORS[2][9:-1]
    wrong_length = b"\n" + f"{dc09.crc16_arc(body):04X}0010".encode() + body + b"\r"
    with pytest.raises(dc09.Unreadable, match="length"):
        dc09.decode_frame(wrong_length, key_for=NO_KEYS, now=now)
    with pytest.raises(dc09.TimestampOutOfWindow):
        dc09.decode_frame(VECTORS[2], key_for=NO_KEYS, now=now + dt.timedelta(seconds=41))
    dc09.decode_frame(VECTORS[2], key_for=NO_KEYS, now=now + dt.timedelta(seconds=40))
    with pytest.raises(dc09.TimestampOutOfWindow):
        dc09.decode_frame(VECTORS[2], key_for=NO_KEYS, now=now - dt.timedelta(seconds=21))
    other = dc09.encode_message("SIA-DCX", 1, "1234", "#1234|NPA1")
    with pytest.raises(dc09.Unsupported) as unsupported:
        dc09.decode_frame(other, key_for=NO_KEYS, now=now)
    assert dc09.duh(unsupported.value.header) == dc09.encode_message("DUH", "0001", "1234")
    encrypted = dc09.encode_message("SIA-DCS", 1, "1234", "#1234|NPA1", timestamp=now, key=KEY)
    with pytest.raises(dc09.Unsupported):
        dc09.decode_frame(encrypted, key_for=NO_KEYS, now=now)
    with pytest.raises(dc09.Unreadable):
        dc09.decode_frame(encrypted, key_for=lambda _: bytes(16), now=now)


@settings(max_examples=300, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_decoder(data: bytes) -> None:
    for raw in (data, b"\n" + data + b"\r"):
        with contextlib.suppress(dc09.Refusal):
            dc09.decode_frame(raw, key_for={"1234": KEY}.get, now=at("13:53:11,06-22-2015"))


sia_item = st.tuples(
    st.sampled_from(["PA", "MA", "FA", "GA", "AT", "AR", "YT", "RP", "OC", "TA", "ZZ"]),
    st.text("0123456789", max_size=4),
)


@settings(max_examples=200, suppress_health_check=list(HealthCheck))
@given(
    st.integers(0, 9999),
    st.text("0123456789ABCDEF", min_size=3, max_size=16),
    st.lists(sia_item, min_size=1, max_size=4),
    st.booleans(),
    st.data(),
)
def test_valid_frames_round_trip_and_mutations_are_refused_or_still_valid(
    seq: int, account: str, items: list[tuple[str, str]], encrypted: bool, data: st.DataObject
) -> None:
    now = at("08:00:00,11-23-2026")
    text = f"#{account}|N" + "/".join(code + zone for code, zone in items)
    key = KEY if encrypted else None
    frame = dc09.encode_message("SIA-DCS", seq, account, text, receiver="1", line="2", timestamp=now, key=key)
    keys = {account.upper(): KEY}.get
    decoded = dc09.decode_frame(frame, key_for=keys, now=now)
    assert (decoded.header.sequence, decoded.header.account, decoded.data) == (f"{seq:04d}", account, text)
    assert [e.code for e in dc09.parse_sia_events(decoded.data)] == [code for code, _ in items]
    position = data.draw(st.integers(0, len(frame) - 1))
    byte = data.draw(st.integers(0, 255))
    mutated = frame[:position] + bytes([byte]) + frame[position + 1 :]
    if mutated == frame:
        return
    try:
        again = dc09.decode_frame(mutated, key_for=keys, now=now)
    except dc09.Refusal as refusal:
        # A damaged header or body fails the CRC (no answer); a damaged CRC field likewise.
        answer = refusal.answer
    else:
        # Accepted only when the CRC still holds: a changed hex case in the header, or (1 in 65,536) chance.
        assert dc09.crc16_arc(mutated[9:-1]) == int(mutated[1:5], 16)
        assert again.header.token in dc09.SUPPORTED_TOKENS
        return
    assert answer in (dc09.Answer.NONE, dc09.Answer.NAK)


def test_adm_cid_inside_dc09() -> None:
    frame = b'\nB0AC0027"ADM-CID"0001L0#7099[#7099|1628 01 000]\r'
    decoded = dc09.decode_frame(frame, key_for=NO_KEYS, now=at("00:00:00,01-01-2020"))
    event = dc09.parse_adm_cid_data(decoded.data, "7099")
    assert (event.code, event.group, event.zone, event.qualifier) == ("628", "01", "000", Qualifier.NEW)


# -- device-cloud JSON ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


@given(
    st.dictionaries(
        st.sampled_from(
            ["event_id", "device_id", "kind", "time", "location", "battery", "restore", "text", "x"]
        ),
        json_values,
    )
)
def test_any_json_body_is_read_or_refused_naming_a_field(body: dict[str, object]) -> None:
    from dispatch.api.errors import ApiError

    try:
        cloud_alarm(body)
    except ApiError as exc:
        refused = exc
    else:
        return
    assert refused.status == 400
    assert refused.extra["field"]
