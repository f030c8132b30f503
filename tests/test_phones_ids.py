"""Phone normalisation and resident ID validation: pure functions, every form we meet."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatch.id_numbers import IdNumberError, check_character, mask_id_number, parse_id_number
from dispatch.logs import redact
from dispatch.phones import PhoneBook, PhoneNumberError, mask_phone

book = PhoneBook(region="CN", home_area_code="0471")


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("0471-6912345", "+864716912345"),
        ("(0471)6912345", "+864716912345"),
        ("（0471）6912345", "+864716912345"),
        ("04716912345", "+864716912345"),
        ("6912345", "+864716912345"),
        ("0471 691 2345", "+864716912345"),
        ("+86 138 0013 8000", "+8613800138000"),
        ("8613800138000", "+8613800138000"),
        ("008613800138000", "+8613800138000"),
        ("13800138000", "+8613800138000"),
        ("１３８００１３８０００", "+8613800138000"),
        ("+86-471-6912345", "+864716912345"),
        ("010-12345678", "+861012345678"),
    ],
)
def test_every_common_form_normalises(raw: str, e164: str) -> None:
    assert book.normalise(raw) == e164


def test_home_area_code_is_configurable() -> None:
    assert PhoneBook(home_area_code="010").normalise("62345678") == "+861062345678"


@pytest.mark.parametrize(
    "raw", ["", "   ", "abc", "12345", "138001380001234567", "+1", "ok!!", "1380013800a"]
)
def test_garbage_is_refused_with_a_clear_error(raw: str) -> None:
    with pytest.raises(PhoneNumberError):
        book.normalise(raw)


@given(st.text(max_size=40))
def test_random_text_never_crashes(raw: str) -> None:
    try:
        result = book.normalise(raw)
    except PhoneNumberError:
        return
    assert result.startswith("+")
    assert result[1:].isdigit()
    assert book.normalise(result) == result


def test_kind_and_national_form() -> None:
    assert book.kind("+8613800138000") == "mobile"
    assert book.kind("+864716912345") == "landline"
    assert book.national("+8613800138000") == "13800138000"


def test_mask_phone_keeps_ends() -> None:
    assert mask_phone("13800138000") == "138******00"


def make_id(area: str, birth: dt.date, seq: int) -> str:
    first17 = f"{area}{birth:%Y%m%d}{seq:03d}"
    return first17 + check_character(first17)


def test_valid_id_number() -> None:
    value = make_id("150102", dt.date(1945, 3, 7), 123)
    parsed = parse_id_number(value)
    assert parsed.birth_date == dt.date(1945, 3, 7)
    assert parsed.sex == "M"  # 3 is odd
    assert parsed.masked == "150102********" + value[-4:]


def test_known_id_with_x_check() -> None:
    # GB 11643 worked example: 11010519491231002X
    parsed = parse_id_number("11010519491231002x")
    assert parsed.value.endswith("X")
    assert parsed.sex == "F"


def test_full_width_id_number() -> None:
    assert parse_id_number("１１０１０５１９４９１２３１００２Ｘ").value == "11010519491231002X"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("1101051949123100", "18 characters"),
        ("11010519491231002Y", "17 digits and a final digit or X"),
        ("110105194902300021", "not a date"),
        ("110105180001010011", "out of range"),
        ("110105194912310021", "check digit"),
    ],
)
def test_bad_id_numbers_say_why(raw: str, reason: str) -> None:
    with pytest.raises(IdNumberError, match=reason):
        parse_id_number(raw)


@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2000, 12, 31)), st.integers(0, 999))
def test_every_generated_id_round_trips(birth: dt.date, seq: int) -> None:
    value = make_id("150105", birth, seq)
    parsed = parse_id_number(value)
    assert parsed.birth_date == birth
    assert parsed.sex == ("M" if seq % 2 else "F")


@given(st.text(max_size=30))
def test_random_text_is_never_a_crash(raw: str) -> None:
    try:
        parsed = parse_id_number(raw)
    except IdNumberError:
        return
    assert parsed.value[:17].isdigit()
    assert check_character(parsed.value[:17]) == parsed.value[17]


def test_one_mistyped_digit_is_caught() -> None:
    value = make_id("150102", dt.date(1950, 1, 1), 7)
    for i in range(17):
        wrong = value[:i] + str((int(value[i]) + 1) % 10) + value[i + 1 :]
        with pytest.raises(IdNumberError):
            parse_id_number(wrong)


def test_mask_id_number_hides_birth_date() -> None:
    assert mask_id_number("15010219450307123X") == "150102********123X"


def test_logs_never_show_numbers_in_clear() -> None:
    line = redact("caller 13800138000 resident 15010219450307123X landline 0471-6912345 at 2026-11-23")
    assert "13800138000" not in line
    assert "19450307" not in line
    assert "6912345" not in line
    assert "2026-11-23" in line
