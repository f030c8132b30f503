"""Every text the console shows has its Chinese: the ids found in the console's code and templates
(as `make messages` finds them) are all translated in the catalogue the console reads."""

from __future__ import annotations

import re

from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir

from dispatch.console import i18n


def test_every_console_text_has_its_chinese() -> None:
    found = {
        message
        for _, _, message, _, _ in extract_from_dir(
            str(i18n.HERE),
            method_map=[("**.py", "python"), ("templates/**.html", "jinja2")],
            keywords={**DEFAULT_KEYWORDS, "_N": None},
        )
    }
    assert len(found) > 100
    chinese = i18n.translations("zh-CN")
    untranslated = sorted(str(m) for m in found if chinese.gettext(str(m)) == m)
    assert untranslated == []


def test_english_is_the_ids_and_chinese_is_the_default() -> None:
    assert i18n.translations("en").gettext("Log in") == "Log in"
    assert i18n.translations("zh-CN").gettext("Log in") == "登录"
    assert i18n.pick_language(None, "zh-CN") == "zh-CN"
    assert i18n.pick_language("en", "zh-CN") == "en"
    assert i18n.pick_language("fr", "zh-CN") == "zh-CN"
    assert i18n.script_texts("zh-CN")["Acknowledge"] == "接警"


def test_no_template_text_has_a_bare_percent() -> None:
    """Templates translate with Jinja's new-style gettext, which always applies `%` formatting:
    a bare `%` in a text ("answered within 60 s, 97.5%") breaks the page in both languages.
    A literal percent is written `%%`; `%(name)s` takes a variable."""
    chinese = i18n.translations("zh-CN")
    bare = re.compile(r"%(?!%|\(\w+\)s|s)")
    broken = []
    for _, _, message, _, _ in extract_from_dir(
        str(i18n.HERE), method_map=[("templates/**.html", "jinja2")], keywords=DEFAULT_KEYWORDS
    ):
        text = str(message)
        for shown in (text, chinese.gettext(text)):
            if bare.search(shown.replace("%%", "")):
                broken.append(shown)
    assert broken == []
