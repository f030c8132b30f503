"""Languages of the console: gettext catalogues read with Babel, one Jinja2 environment per language.

The message ids are English; `locale/zh_CN/LC_MESSAGES/console.po` holds the
Chinese. The `.po` files are read and compiled in memory at the first render
(Babel's reader and writer), so a fresh clone needs no build step and a `.mo`
can never be older than its `.po`. English needs no catalogue: its ids are the text.

The language of a request is the `careline_lang` cookie (set by the switch in
the page header), else `locale.language` from the configuration (zh-CN).
Times are shown in `locale.timezone` (Asia/Shanghai) by the `local_time` filter.
"""

from __future__ import annotations

import datetime as dt
import functools
import gettext
import io
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from markupsafe import Markup

HERE = Path(__file__).resolve().parent
LOCALE_DIR = HERE / "locale"
TEMPLATES_DIR = HERE / "templates"
LANGUAGES = ("zh-CN", "en")
LANG_COOKIE = "careline_lang"
# gettext's directory name for each console language
_GETTEXT_NAMES = {"zh-CN": "zh_CN", "en": "en"}
DOMAIN = "console"


def _N(message: str) -> str:
    """Marks a message for extraction without translating it (texts the scripts show)."""
    return message


# Texts the page scripts show: sent to the browser translated, as `window.CARELINE.texts`.
SCRIPT_TEXTS: tuple[str, ...] = (
    _N("Ringing"),
    _N("In queue"),
    _N("Answered by %s"),
    _N("Unknown caller"),
    _N("Emergency"),
    _N("No live calls"),
    _N("No open alerts"),
    _N("No open orders"),
    _N("Acknowledge"),
    _N("Dispatch suggested team"),
    _N("Record 120 hand-off"),
    _N("Resolve"),
    _N("Cancel alert"),
    _N("Call contact"),
    _N("Re-offer"),
    _N("Cancel order"),
    _N("Offer"),
    _N("Reason"),
    _N("overdue"),
    _N("escalates in"),
    _N("escalation due"),
    _N("waiting"),
    _N("Done"),
    _N("Failed"),
    _N("Connection lost, reconnecting…"),
    _N("Live"),
    _N("Suggested team"),
    _N("No team available"),
    _N("Deadlines"),
    _N("Timeline"),
    _N("Candidates"),
    _N("Offers"),
    _N("Provider"),
    _N("Order created"),
    _N("Order #%s"),
    _N("Alert #%s"),
    _N("years"),
    _N("Give a reason first"),
    _N("Call placed"),
    _N("State"),
    _N("score"),
    _N("Sound on"),
    _N("Sound off"),
    _N("Close"),
    _N("Urgent"),
    _N("Medication"),
    _N("Allergies"),
    _N("Phone call"),
    _N("None"),
    _N("Team"),
    _N("female"),
    _N("male"),
    _N("inbound"),
    _N("outbound"),
    _N("answered"),
    _N("abandoned"),
    _N("failed"),
    _N("busy"),
    _N("no_answer"),
    _N("active"),
    _N("maintenance"),
    _N("retired"),
    _N("Address"),
    _N("Community"),
    _N("Living situation"),
    _N("Phones"),
    _N("Subsidy"),
    _N("Emergency contacts"),
    _N("Devices"),
    _N("Recent"),
    _N("Window"),
    _N("Notes"),
    _N("Service"),
    _N("declined"),
    _N("expired"),
    # the floor's notices
    _N("No open notices"),
    _N("Critical"),
    _N("For supervisors"),
    _N("Acknowledge notice"),
    _N("Device #%s"),
    _N("Alarm #%s"),
    _N("SMS #%s"),
    _N("Call task #%s"),
    _N("alert.ack_supervisor"),
    _N("alert.ack_all_operators"),
    _N("alert.team_silent"),
    _N("alert.on_scene_overdue"),
    _N("alert.family_check"),
    # states and kinds shown from the API's codes
    _N("raised"),
    _N("acknowledged"),
    _N("team_dispatched"),
    _N("team_acknowledged"),
    _N("on_scene"),
    _N("resolved"),
    _N("cancelled"),
    _N("new"),
    _N("offered"),
    _N("accepted"),
    _N("in_service"),
    _N("completed"),
    _N("confirmed"),
    _N("settled"),
    _N("unfilled"),
    _N("complaint"),
    _N("sos"),
    _N("medical"),
    _N("fall"),
    _N("fire"),
    _N("gas"),
    _N("water"),
    _N("inactivity"),
    _N("tamper"),
    _N("other"),
    _N("alone"),
    _N("empty_nest"),
    _N("with_family"),
    _N("handled_at_home"),
    _N("hospital"),
    _N("false_alarm"),
    _N("no_access"),
    _N("home_unit"),
    _N("pendant"),
    _N("smoke"),
    _N("door"),
    # roles, and what opened a record (the access log)
    _N("operator"),
    _N("supervisor"),
    _N("admin"),
    _N("call"),
    _N("card"),
    _N("page"),
)


def _compile(po_path: Path) -> gettext.GNUTranslations:
    with po_path.open("rb") as po:
        catalog = read_po(po, locale=po_path.parent.parent.name)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


@functools.cache
def translations(language: str) -> gettext.NullTranslations:
    po_path = LOCALE_DIR / _GETTEXT_NAMES[language] / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not po_path.exists():
        return gettext.NullTranslations()
    return _compile(po_path)


def _local_time(value: dt.datetime | None, tz: str, pattern: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return ""
    return value.astimezone(ZoneInfo(tz)).strftime(pattern)


def _json_script(value: Any) -> Markup:
    """JSON safe inside a <script> element: no `</script>` or `<!--` can end it early."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)


@functools.cache
def environment(language: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
    )
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.filters["local_time"] = _local_time
    env.filters["json_script"] = _json_script
    return env


def script_texts(language: str) -> dict[str, str]:
    t = translations(language)
    return {text: t.gettext(text) for text in SCRIPT_TEXTS}


def pick_language(cookie: str | None, default: str) -> str:
    return cookie if cookie in LANGUAGES else default
