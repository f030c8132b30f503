"""The SMS reply grammar of providers and emergency teams, as one pure function.

    1 4821   Y 4821   y4821   接 4821   接4821   接单 4821    accept
    2 4821   N 4821   拒 4821   拒绝 4821                    decline
    3 4821   到 4821   到达 4821   已到 4821                  arrived
    9 4821   完 4821   完成 4821   已完成 4821                done

The code may be left out ("1", "接") when the sender has one open job; the
router decides that, the parser only reports `code=None`.

Tolerated: full-width characters (NFKC), upper or lower case, any spacing,
Chinese and ASCII punctuation anywhere (，。！、：；,.!?:;-…), so "１，４８２１。"
reads as "1 4821". Decisions, each to avoid acting on something the sender
did not mean:
- A digit action must be separated from the code: "14821" is refused, since
  it could as well be a code typed alone or a five-digit code. A letter or
  Chinese action may be glued to it ("y4821", "接4821").
- The two-character words 接单, 拒绝, 到达, 已到, 完成, 已完成 are accepted: they
  say one thing. "好的", "ok", "yes", "收到" are refused: they do not say which
  of accept and "I read it" is meant.
- Anything after the code is refused ("1 4821 不行" must not accept), and so
  is a code that is not 4-8 digits ("1 12ab", "1 2 3").
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum


class ReplyAction(StrEnum):
    ACCEPT = "accept"
    DECLINE = "decline"
    ARRIVED = "arrived"
    DONE = "done"


# Every way of writing each action; the first is the canonical one (digits first).
ACTION_WORDS: dict[ReplyAction, tuple[str, ...]] = {
    ReplyAction.ACCEPT: ("1", "y", "接", "接单"),
    ReplyAction.DECLINE: ("2", "n", "拒", "拒绝"),
    ReplyAction.ARRIVED: ("3", "到", "到达", "已到"),
    ReplyAction.DONE: ("9", "完", "完成", "已完成"),
}
_WORD_ACTION = {word: action for action, words in ACTION_WORDS.items() for word in words}
# Words that may be glued to the code, longest first so 接单4821 is not read as 接 + 单4821.
_GLUABLE = sorted((w for w in _WORD_ACTION if not w.isdigit()), key=len, reverse=True)
_GLUED = re.compile(f"^({'|'.join(map(re.escape, _GLUABLE))})([0-9]+)$")

CODE_MIN_DIGITS = 4
CODE_MAX_DIGITS = 8
_CODE = re.compile(f"^[0-9]{{{CODE_MIN_DIGITS},{CODE_MAX_DIGITS}}}$")

# Punctuation read as a space (after NFKC, so full-width forms are already ASCII).
_SEPARATORS = re.compile(r"[\s,.!?;:、。，．！？；：…~\-_/\\|()\[\]【】「」『』“”‘’\"'`*#+=]+")


class ReplyError(ValueError):
    """A reply that is not in the grammar; `reason` is a short machine-readable word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Reply:
    action: ReplyAction
    code: str | None = None


def normalise_reply(text: str) -> str:
    """NFKC, lower case, punctuation as spaces, single spaces, trimmed."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _SEPARATORS.sub(" ", folded).strip()


def parse_reply(text: str) -> Reply:
    """Read one SMS reply, or raise ReplyError saying why it cannot be read."""
    tokens = normalise_reply(text).split()
    if not tokens:
        raise ReplyError("empty", "the reply is empty")
    first, rest = tokens[0], tokens[1:]
    action = _WORD_ACTION.get(first)
    if action is not None:
        code = None
        if rest:
            code = rest[0]
            if not _CODE.match(code):
                raise ReplyError("bad_code", f"a job code is {CODE_MIN_DIGITS}-{CODE_MAX_DIGITS} digits")
            if len(rest) > 1:
                raise ReplyError("extra_text", "there is more text after the job code")
        return Reply(action, code)
    glued = _GLUED.match(first)
    if glued is not None:
        if rest:
            raise ReplyError("extra_text", "there is more text after the job code")
        code = glued[2]
        if not _CODE.match(code):
            raise ReplyError("bad_code", f"a job code is {CODE_MIN_DIGITS}-{CODE_MAX_DIGITS} digits")
        return Reply(_WORD_ACTION[glued[1]], code)
    if first.isascii() and first.isdigit():
        if len(first) > 1 and first[0] in "1239" and not rest:
            raise ReplyError("digits_glued", "put a space between the action digit and the job code")
        raise ReplyError("no_action", "the reply does not start with 1, 2, 3 or 9")
    raise ReplyError("unknown_action", "the reply does not start with an action")


def format_reply(reply: Reply) -> str:
    """The canonical spelling: the action digit, a space, the code ("1 4821")."""
    digit = ACTION_WORDS[reply.action][0]
    return digit if reply.code is None else f"{digit} {reply.code}"
