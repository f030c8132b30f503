"""Configuration: `config.toml` defaults, overridden by environment variables.

Every key is declared once here with its type, default and what a valid value
looks like; the loader rejects unknown keys (a typo must not silently fall back
to a default) and names the key, the value and what was expected.
Secrets are never read from a file: they come from the environment only.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = REPO_ROOT / "config.toml"


class ConfigError(ValueError):
    """A configuration value is wrong; the message is one line naming the key."""


Check = Callable[[str, Any], Any]


def _describe(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def integer(low: int, high: int) -> Check:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool):
            ok = False
        elif isinstance(value, int):
            ok = True
        elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value, ok = int(value.strip()), True
        else:
            ok = False
        if not ok or not low <= value <= high:
            raise ConfigError(f"{key}: expected an integer {low}-{high}, got {_describe(value)}")
        return int(value)

    return check


def number(low: float, high: float) -> Check:
    def check(key: str, value: Any) -> float:
        try:
            parsed = float(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            parsed = None
        if parsed is None or not low <= parsed <= high:
            raise ConfigError(f"{key}: expected a number {low:g}-{high:g}, got {_describe(value)}")
        return parsed

    return check


def boolean(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{key}: expected true or false, got {_describe(value)}")


def text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {_describe(value)}")
    return value


def choice(*options: str) -> Check:
    def check(key: str, value: Any) -> str:
        if value not in options:
            raise ConfigError(f"{key}: expected one of {', '.join(options)}, got {_describe(value)}")
        return str(value)

    return check


def http_url(key: str, value: Any) -> str:
    parts = urlsplit(str(value))
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ConfigError(f"{key}: expected an http(s) URL, got {_describe(value)}")
    return str(value).rstrip("/")


def database_url(key: str, value: Any) -> str:
    if value == "":
        return ""
    if urlsplit(str(value)).scheme not in {"postgres", "postgresql"}:
        raise ConfigError(
            f"{key}: expected a postgresql:// URL or empty for the embedded server, "
            f"got {_describe(_redact_url(str(value)))}"
        )
    return str(value)


def timezone(key: str, value: Any) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{key}: expected an IANA time zone such as Asia/Shanghai, got {_describe(value)}"
        ) from None
    return str(value)


def area_code(key: str, value: Any) -> str:
    digits = str(value)
    if not (digits.startswith("0") and digits.isdigit() and 3 <= len(digits) <= 4):
        raise ConfigError(f"{key}: expected a Chinese area code such as 0471, got {_describe(value)}")
    return digits


def server_name(key: str, value: Any) -> str:
    name = str(value)
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", name):
        raise ConfigError(
            f"{key}: expected a short name of lower-case letters, digits, - and _ (such as pbx1), "
            f"got {_describe(value)}"
        )
    return name


def number_list(key: str, value: Any) -> tuple[str, ...]:
    """Dialled numbers (DIDs) as Asterisk shows them in Exten: digits, maybe a leading +."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(
        isinstance(item, str) and re.fullmatch(r"\+?[0-9]{2,20}", item.strip()) for item in items
    ):
        raise ConfigError(f'{key}: expected a list of numbers such as ["12349"], got {_describe(value)}')
    return tuple(item.strip() for item in items)


def name_list(key: str, value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(
        isinstance(item, str) and re.fullmatch(r"[A-Za-z0-9_.+-]+", item.strip()) for item in items
    ):
        raise ConfigError(f"{key}: expected a list of dialplan names, got {_describe(value)}")
    return tuple(item.strip() for item in items)


def dialplan_name(key: str, value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.+-]+", value):
        raise ConfigError(f"{key}: expected a dialplan name such as care-ivr, got {_describe(value)}")
    return value


def channel_template(key: str, value: Any) -> str:
    text_ = str(value)
    if "{extension}" not in text_ or "/" not in text_:
        raise ConfigError(
            f"{key}: expected a channel with {{extension}} in it, such as PJSIP/{{extension}} or "
            f"Local/{{extension}}@operators, got {_describe(value)}"
        )
    return text_


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def seconds_window(key: str, value: Any) -> tuple[float, float]:
    """Two numbers of seconds, [before, after]: a TOML array, or "40,20" from the environment."""
    parts = value.split(",") if isinstance(value, str) else value
    try:
        pair = tuple(float(p) for p in parts) if isinstance(parts, list | tuple) else ()
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or not all(0 <= p <= 86400 for p in pair):
        raise ConfigError(f"{key}: expected [seconds before, seconds after] such as [40, 20], got {value!r}")
    return pair[0], pair[1]


def setting(default: Any, check: Check, *, env: str | None = None, secret: bool = False) -> Any:
    """Declare a key: its default, its check, and (for secrets) the environment variable."""
    # A secret never shows in repr(config): a logged config must not carry a token.
    return field(default=default, repr=not secret, metadata={"check": check, "env": env, "secret": secret})


@dataclass(frozen=True)
class ServerConfig:
    host: str = setting("127.0.0.1", text)
    port: int = setting(8080, integer(0, 65535))
    public_url: str = setting("http://127.0.0.1:8080", http_url)
    shutdown_grace_seconds: float = setting(10.0, number(0, 300))


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = setting("", database_url, env="CARELINE_DATABASE_URL")
    embedded_dir: str = setting("var/pgdata", text)
    pool_min: int = setting(2, integer(1, 100))
    pool_max: int = setting(10, integer(1, 500))
    connect_timeout_seconds: float = setting(10.0, number(0.5, 120))


@dataclass(frozen=True)
class LoggingConfig:
    level: str = setting("INFO", choice("DEBUG", "INFO", "WARNING", "ERROR"))
    format: str = setting("text", choice("text", "json"))


@dataclass(frozen=True)
class LocaleConfig:
    timezone: str = setting("Asia/Shanghai", timezone)
    language: str = setting("zh-CN", choice("zh-CN", "en"))
    phone_region: str = setting("CN", choice("CN"))
    home_area_code: str = setting("0471", area_code)


@dataclass(frozen=True)
class SecurityConfig:
    secret_key: str = setting("", text, env="CARELINE_SECRET_KEY", secret=True)


@dataclass(frozen=True)
class ConsoleConfig:
    # A console session ends this many hours after log-in (one shift and a little).
    session_hours: float = setting(12.0, number(0.1, 168))
    # auto: the session cookie is Secure when the request came over TLS or server.public_url is https.
    secure_cookies: str = setting("auto", choice("auto", "always", "never"))
    # This many refused log-ins of one user name from one address within the window → refused.
    login_failures_allowed: int = setting(5, integer(1, 1000))
    login_window_seconds: float = setting(300.0, number(1, 86400))


@dataclass(frozen=True)
class SmsConfig:
    # Both set: messages go through Twilio. Either missing: the development outbox.
    twilio_account_sid: str = setting("", text, env="TWILIO_ACCOUNT_SID", secret=True)
    twilio_auth_token: str = setting("", text, env="TWILIO_AUTH_TOKEN", secret=True)
    twilio_from: str = setting("", text)
    twilio_messaging_service_sid: str = setting("", text)
    twilio_api_base: str = setting("https://api.twilio.com", http_url)
    send_timeout_seconds: float = setting(8.0, number(1, 120))
    poll_interval_seconds: float = setting(2.0, number(0.05, 60))
    concurrency: int = setting(4, integer(1, 64))
    max_attempts: int = setting(6, integer(1, 50))
    retry_base_seconds: float = setting(10.0, number(0.1, 3600))
    retry_max_seconds: float = setting(600.0, number(1, 86400))
    lease_seconds: float = setting(60.0, number(5, 3600))
    job_link_grace_hours: float = setting(24.0, number(0, 720))
    help_replies_per_hour: int = setting(3, integer(0, 100))

    @property
    def twilio_enabled(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)


@dataclass(frozen=True)
class AlertsConfig:
    # The escalation ladder, in seconds.
    ack_supervisor_seconds: float = setting(30.0, number(1, 3600))
    ack_all_operators_seconds: float = setting(60.0, number(1, 3600))
    team_ack_seconds: float = setting(120.0, number(10, 3600))
    on_scene_seconds: float = setting(1200.0, number(60, 86400))
    family_retry_seconds: float = setting(180.0, number(10, 3600))
    # How long a team's SMS job code stays answerable after dispatch.
    job_hours: float = setting(12.0, number(1, 168))
    # How often the deadline runner looks for due deadlines even without a NOTIFY.
    poll_seconds: float = setting(1.0, number(0.05, 60))


@dataclass(frozen=True)
class AlarmsConfig:
    # SIA DC-09 receiver, TCP and UDP on the same port (0: any free port).
    dc09_host: str = setting("127.0.0.1", text)
    dc09_port: int = setting(7010, integer(0, 65535))
    # A message timestamp this many seconds [before, after] the receiver's clock is accepted.
    dc09_time_window_seconds: tuple[float, float] = setting((40.0, 20.0), seconds_window)
    # A frame repeating an account + sequence seen this recently is a resend: ACKed, not stored.
    dc09_duplicate_window_seconds: float = setting(3600.0, number(1, 7 * 86400))
    dc09_max_connections: int = setting(2000, integer(1, 100_000))
    # An idle TCP connection is closed after this long.
    dc09_read_timeout_seconds: float = setting(120.0, number(1, 3600))
    # Longest wait for the database before a frame goes unanswered (the unit retries).
    intake_timeout_seconds: float = setting(5.0, number(0.1, 60))
    # An alarm this soon after its resident's alert of that kind was closed is attached to it.
    rejoin_window_seconds: float = setting(120.0, number(0, 3600))
    # Signed device-cloud posts: the X-Careline-Timestamp must be this close to our clock.
    http_timestamp_window_seconds: float = setting(300.0, number(10, 3600))
    # A reported battery at or below this percentage raises a maintenance notice.
    battery_low_percent: int = setting(20, integer(0, 100))
    # How often silent devices are looked for.
    sweep_interval_seconds: float = setting(60.0, number(1, 86400))
    # An alarm is stored (and its sender answered) before it is handled (alert raised or joined);
    # one still unhandled this long (the database went away, a failure) is handled again.
    handling_retry_seconds: float = setting(10.0, number(1, 3600))


@dataclass(frozen=True)
class OrdersConfig:
    # How long a provider has to answer an offer before it goes to the next candidate.
    offer_seconds: float = setting(600.0, number(1, 86400))
    # Urgent items are offered to this many providers at once; the first to accept wins.
    urgent_fanout: int = setting(3, integer(1, 20))
    # Nobody checked in this long after the window started → a late-visit notice.
    late_visit_grace_seconds: float = setting(900.0, number(0, 86400))
    # The provider is reminded this long before the window starts.
    reminder_seconds_before: float = setting(3600.0, number(0, 86400))
    # How long after the window ends a provider's job code still takes replies (a late check-out).
    job_hours_after_window: float = setting(12.0, number(1, 168))
    # A service-button order asks for a visit within this long after the press.
    button_window_seconds: float = setting(7200.0, number(600, 86400))
    # The matching score (dispatch/matching.py): weights of its parts, each part 0-1.
    weight_distance: float = setting(0.35, number(0, 100))
    weight_rating: float = setting(0.20, number(0, 100))
    weight_acceptance: float = setting(0.15, number(0, 100))
    weight_load: float = setting(0.10, number(0, 100))
    weight_fairness: float = setting(0.20, number(0, 100))
    # The distance at which the distance part is worth half of a provider next door.
    distance_half_km: float = setting(5.0, number(0.1, 1000))
    # The follow-up call (回访) is placed this long after check-out, moved out of quiet hours.
    follow_up_delay_seconds: float = setting(7200.0, number(0, 7 * 86400))
    # Tries of a follow-up, reassurance or alert follow-up call before an operator is asked.
    follow_up_tries: int = setting(3, integer(1, 10))
    follow_up_retry_seconds: float = setting(1800.0, number(60, 86400))
    # No call Careline places on its own starts in [quiet_start_hour, quiet_end_hour) local time.
    quiet_start_hour: int = setting(21, integer(0, 23))
    quiet_end_hour: int = setting(8, integer(0, 23))
    # How long past a try's ring time the IVR's report is waited for before it counts unanswered.
    call_result_grace_seconds: float = setting(120.0, number(10, 3600))
    # A device fault opens a repair order for this catalogue item with a remedy clock.
    repair_item_code: str = setting("AR16", text)
    repair_remedy_seconds: float = setting(7200.0, number(600, 7 * 86400))
    # A follow-up call asked for when an alert is closed is placed this long after, by default.
    alert_follow_up_seconds: float = setting(3600.0, number(0, 86400))
    # Defaults of a new care plan: unanswered calls in a row before an inactivity alert, and
    # how long after an unanswered care call it is tried again.
    care_unanswered_threshold: int = setting(3, integer(1, 20))
    care_retry_seconds: int = setting(600, integer(0, 86400))

    def __post_init__(self) -> None:
        weights = (
            self.weight_distance,
            self.weight_rating,
            self.weight_acceptance,
            self.weight_load,
            self.weight_fairness,
        )
        if sum(weights) <= 0:
            raise ConfigError("orders.weight_distance: at least one score weight must be above 0")


@dataclass(frozen=True)
class ServiceLevelsConfig:
    # Hotline calls answered within these many seconds, and the share that must be (percent).
    answer_fast_seconds: int = setting(60, integer(1, 3600))
    answer_fast_target_percent: float = setting(97.5, number(0, 100))
    answer_slow_seconds: int = setting(180, integer(1, 3600))
    answer_slow_target_percent: float = setting(99.0, number(0, 100))
    # A call that waited longer than this asks the operator for a reason.
    long_wait_seconds: int = setting(180, integer(1, 3600))
    # Offers accepted before their deadline, visits checked in within their window (percent).
    offers_accepted_target_percent: float = setting(80.0, number(0, 100))
    visits_on_time_target_percent: float = setting(95.0, number(0, 100))


@dataclass(frozen=True)
class DemoConfig:
    seed: int = setting(12349, integer(0, 2**31 - 1))
    residents: int = setting(5000, integer(0, 2_000_000))
    devices: int = setting(1300, integer(0, 2_000_000))
    providers: int = setting(130, integer(0, 100_000))
    teams: int = setting(12, integer(0, 10_000))


def entry_secret_variable(variable: str, entry_name: str) -> str:
    """The variable holding one array entry's secret: CARELINE_AMI_SECRET_PBX_1 for `pbx-1`."""
    return f"{variable}_" + re.sub(r"[^A-Za-z0-9]", "_", entry_name).upper()


@dataclass(frozen=True)
class AsteriskConfig:
    """One Asterisk server reached over AMI (an `[[asterisk]]` table)."""

    name: str = setting("", server_name)
    host: str = setting("127.0.0.1", text)
    port: int = setting(5038, integer(1, 65535))
    username: str = setting("careline", text)
    # CARELINE_AMI_SECRET_<NAME>, else CARELINE_AMI_SECRET (the loader fills it in)
    secret: str = field(
        default="", repr=False, metadata={"check": text, "env": "CARELINE_AMI_SECRET", "secret": True}
    )
    hotline_dids: tuple[str, ...] = setting(("12349",), number_list)
    emergency_dids: tuple[str, ...] = setting((), number_list)
    # A call whose first channel starts in one of these contexts is inbound even on a DID not listed.
    inbound_contexts: tuple[str, ...] = setting(("from-resident",), name_list)
    queue: str = setting("hotline", dialplan_name)
    # How Careline rings an operator's phone first (callback, family call).
    operator_channel: str = setting("Local/{extension}@operators", channel_template)
    # Where an outbound number is dialled: Local/<number>@outbound_context.
    outbound_context: str = setting("outbound", dialplan_name)
    care_context: str = setting("care-ivr", dialplan_name)
    rating_context: str = setting("rating-ivr", dialplan_name)
    family_context: str = setting("family-call", dialplan_name)
    # The number shown to the people Careline calls.
    caller_id: str = setting("12349", text)
    originate_ring_seconds: float = setting(30.0, number(5, 300))
    connect_timeout_seconds: float = setting(5.0, number(0.5, 60))
    ping_interval_seconds: float = setting(20.0, number(1, 600))
    ping_timeout_seconds: float = setting(10.0, number(0.5, 120))
    reconnect_min_seconds: float = setting(1.0, number(0.05, 60))
    reconnect_max_seconds: float = setting(30.0, number(1, 3600))
    auth_retry_seconds: float = setting(60.0, number(1, 3600))


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    locale: LocaleConfig = field(default_factory=LocaleConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    orders: OrdersConfig = field(default_factory=OrdersConfig)
    alarms: AlarmsConfig = field(default_factory=AlarmsConfig)
    sms: SmsConfig = field(default_factory=SmsConfig)
    service_levels: ServiceLevelsConfig = field(default_factory=ServiceLevelsConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    # One entry per [[asterisk]] table; none: calls are unavailable.
    asterisk: tuple[AsteriskConfig, ...] = field(default=(), metadata={"array_of": AsteriskConfig})
    source: str = "defaults"

    def embedded_pgdata(self) -> Path:
        path = Path(self.database.embedded_dir)
        return path if path.is_absolute() else REPO_ROOT / path


def _section_types() -> dict[str, type[Any]]:
    return {
        f.name: f.default_factory  # type: ignore[misc]
        for f in dataclasses.fields(Config)
        if f.default_factory is not dataclasses.MISSING
    }


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read `path` (default: the repo's config.toml), apply the environment, validate all."""
    environ = os.environ if environ is None else environ
    path = path or DEFAULT_CONFIG_PATH
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config: file {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {path} is not valid TOML: {exc}") from None

    sections = _section_types()
    arrays = _array_types()
    unknown = sorted(set(raw) - set(sections) - set(arrays))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown section (known: {', '.join(sorted(sections))})")

    built: dict[str, Any] = {}
    for name, cls in sections.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{name}: expected a table [{name}], got {_describe(table)}")
        built[name] = _build_section(name, cls, table, environ)
    for name, cls in arrays.items():
        built[name] = _build_array(name, cls, raw.get(name, []), environ)
    return Config(**built, source=str(path))


def _array_types() -> dict[str, type[Any]]:
    return {f.name: f.metadata["array_of"] for f in dataclasses.fields(Config) if "array_of" in f.metadata}


def _build_array(name: str, cls: type[Any], entries: Any, environ: Mapping[str, str]) -> tuple[Any, ...]:
    """An array of tables (`[[asterisk]]`): each entry checked like a section, keys named `name[i].key`.

    Entries take no per-key environment overrides (which entry would CARELINE_ASTERISK_PORT be?);
    a secret comes from `<ENV>_<ENTRY NAME>` or else `<ENV>`.
    """
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{name}: expected an array of tables [[{name}]], got {_describe(entries)}")
    built: list[Any] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        prefix = f"{name}[{index}]"
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(entry) - set(fields))
        if unknown:
            raise ConfigError(f"{prefix}.{unknown[0]}: unknown key (known: {', '.join(fields)})")
        if "name" in fields and "name" not in entry:
            raise ConfigError(f"{prefix}.name: is required (a short name such as pbx1)")
        values: dict[str, Any] = {}
        for key, f in fields.items():
            dotted = f"{prefix}.{key}"
            if f.metadata["secret"]:
                variable = entry_secret_variable(f.metadata["env"], str(entry.get("name")))
                if key in entry:
                    raise ConfigError(
                        f"{dotted}: secrets are read from the environment only; set {variable} or "
                        f"{f.metadata['env']}"
                    )
                value = environ.get(variable, environ.get(f.metadata["env"], f.default))
            else:
                value = entry.get(key, f.default)
            values[key] = f.metadata["check"](dotted, value)
        if values.get("name") in seen:
            raise ConfigError(
                f"{prefix}.name: {values['name']!r} is already the name of {name}[{seen[values['name']]}]"
            )
        seen[values.get("name", "")] = index
        built.append(cls(**values))
    return tuple(built)


def _build_section(name: str, cls: type[Any], table: dict[str, Any], environ: Mapping[str, str]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}: unknown key (known: {', '.join(fields)})")
    values: dict[str, Any] = {}
    for key, f in fields.items():
        dotted = f"{name}.{key}"
        env_name = f.metadata["env"] or f"CARELINE_{name}_{key}".upper()
        if f.metadata["secret"] and key in table:
            raise ConfigError(f"{dotted}: secrets are read from the environment only; set {env_name}")
        value = environ.get(env_name, table.get(key, f.default))
        values[key] = f.metadata["check"](dotted, value)
    return cls(**values)


def redacted_database_url(url: str) -> str:
    return _redact_url(url)
