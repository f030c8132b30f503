"""The SMS reply grammar: a table of what providers and teams really type, and properties."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from providers.replies import (
    ACTION_WORDS,
    CODE_MAX_DIGITS,
    CODE_MIN_DIGITS,
    Reply,
    ReplyAction,
    ReplyError,
    format_reply,
    parse_reply,
)

A, D, R, F = ReplyAction.ACCEPT, ReplyAction.DECLINE, ReplyAction.ARRIVED, ReplyAction.DONE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 1234", Reply(A, "1234")),
        ("Y 1234", Reply(A, "1234")),
        ("y1234", Reply(A, "1234")),
        ("接 1234", Reply(A, "1234")),
        ("接1234", Reply(A, "1234")),
        ("接单 1234", Reply(A, "1234")),
        ("接单1234", Reply(A, "1234")),
        ("2 1234", Reply(D, "1234")),
        ("N 1234", Reply(D, "1234")),
        ("n1234", Reply(D, "1234")),
        ("拒 1234", Reply(D, "1234")),
        ("拒绝1234", Reply(D, "1234")),
        ("3 1234", Reply(R, "1234")),
        ("到 1234", Reply(R, "1234")),
        ("已到 1234", Reply(R, "1234")),
        ("到达1234", Reply(R, "1234")),
        ("9 1234", Reply(F, "1234")),
        ("完 1234", Reply(F, "1234")),
        ("完成 1234", Reply(F, "1234")),
        ("已完成1234", Reply(F, "1234")),
        ("1", Reply(A, None)),
        ("接", Reply(A, None)),
        ("9", Reply(F, None)),
        ("N", Reply(D, None)),
        # full-width digits and letters, ideographic space, Chinese punctuation, stray spaces
        ("１　１２３４", Reply(A, "1234")),
        ("Ｙ１２３４", Reply(A, "1234")),
        ("1，1234。", Reply(A, "1234")),
        ("接：1234！", Reply(A, "1234")),
        ("  3 ;  1234  ", Reply(R, "1234")),
        ("2、1234", Reply(D, "1234")),
        ("9-1234", Reply(F, "1234")),
        ("1\n1234", Reply(A, "1234")),
        ("1 12345678", Reply(A, "12345678")),
        ("1。", Reply(A, None)),
    ],
)
def test_grammar_table(text: str, expected: Reply) -> None:
    assert parse_reply(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("  。，", "empty"),
        ("ok!!", "unknown_action"),
        ("好的", "unknown_action"),
        ("收到", "unknown_action"),
        ("yes 1234", "unknown_action"),
        ("老人不在家", "unknown_action"),
        ("1 2 3", "bad_code"),
        ("1 12ab", "bad_code"),
        ("1 123", "bad_code"),
        ("1 123456789", "bad_code"),
        ("1 1234 不行", "extra_text"),
        ("1 1234 5678", "extra_text"),
        ("接1234 谢谢", "extra_text"),
        ("y12", "bad_code"),
        ("11234", "digits_glued"),
        ("5 1234", "no_action"),
        ("1234 1", "no_action"),
        ("接 单 1234", "bad_code"),
    ],
)
def test_refused(text: str, reason: str) -> None:
    with pytest.raises(ReplyError) as refused:
        parse_reply(text)
    assert refused.value.reason == reason


@given(st.text(max_size=60))
@example("\x00\ud7ff\U0010ffff")
@example("１" * 500)
def test_random_text_parses_or_is_refused_never_crashes(text: str) -> None:
    try:
        reply = parse_reply(text)
    except ReplyError:
        return
    # whatever parses means the same as its canonical form
    assert parse_reply(format_reply(reply)) == reply


# Text built mostly from the grammar's own characters, so that much of it parses.
grammar_chars = st.text(alphabet="0123456789yYnN接拒到完单绝达已成 ，。！、：；,.!１２３４ａ", max_size=14)


@given(grammar_chars)
def test_near_grammar_text_round_trips(text: str) -> None:
    try:
        reply = parse_reply(text)
    except ReplyError:
        return
    assert reply.code is None or CODE_MIN_DIGITS <= len(reply.code) <= CODE_MAX_DIGITS
    assert reply.code is None or reply.code.isascii()
    assert parse_reply(format_reply(reply)) == reply


def _full_width(text: str) -> str:
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in text)


@st.composite
def valid_forms(draw: st.DrawFn) -> tuple[str, Reply]:
    """A reply as someone might type it, and what it means."""
    action = draw(st.sampled_from(list(ReplyAction)))
    word = draw(st.sampled_from(ACTION_WORDS[action]))
    word = draw(st.sampled_from([word, word.upper()]))
    code = draw(st.none() | st.from_regex(f"[0-9]{{{CODE_MIN_DIGITS},{CODE_MAX_DIGITS}}}", fullmatch=True))
    gaps = [" ", "  ", "　", "，", "：", "、", ", ", "\t", " ; "]
    if not word.isdigit():
        gaps.append("")  # a letter or Chinese action may be glued to the code
    text = word if code is None else word + draw(st.sampled_from(gaps)) + code
    if draw(st.booleans()):
        text = _full_width(text)
    edges = st.sampled_from(["", " ", "。", "！", " ,", "\n"])
    return draw(edges) + text + draw(edges), Reply(action, code)


@given(valid_forms())
def test_every_valid_form_parses_to_what_it_means(form: tuple[str, Reply]) -> None:
    text, meaning = form
    assert parse_reply(text) == meaning
    assert parse_reply(format_reply(meaning)) == meaning
