"""Configuration: defaults, environment overrides, and one clear line for each bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatch.config import DEFAULT_CONFIG_PATH, ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_repo_config_is_valid_and_matches_defaults() -> None:
    config = load_config(DEFAULT_CONFIG_PATH, environ={})
    assert config.server.port == 8080
    assert config.database.url == ""
    assert config.locale.timezone == "Asia/Shanghai"
    assert config.locale.home_area_code == "0471"


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9000\n")
    config = load_config(
        path,
        environ={"CARELINE_SERVER_PORT": "9191", "CARELINE_DATABASE_URL": "postgresql://u@127.0.0.1/x"},
    )
    assert config.server.port == 9191
    assert config.database.url == "postgresql://u@127.0.0.1/x"


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        ("", {"CARELINE_SERVER_PORT": "abc"}, "server.port: expected an integer 0-65535, got 'abc'"),
        ("[server]\nport = 70000\n", {}, "server.port: expected an integer 0-65535, got 70000"),
        ("[server]\nport = true\n", {}, "server.port: expected an integer 0-65535, got True"),
        ("[server]\npublic_url = 'localhost'\n", {}, "server.public_url: expected an http(s) URL"),
        ("[server]\nprot = 1\n", {}, "server.prot: unknown key"),
        ("[sever]\n", {}, "sever: unknown section"),
        ("[logging]\nlevel = 'LOUD'\n", {}, "logging.level: expected one of DEBUG, INFO, WARNING, ERROR"),
        ("[locale]\ntimezone = 'Mars/Olympus'\n", {}, "locale.timezone: expected an IANA time zone"),
        ("[locale]\nhome_area_code = '471'\n", {}, "locale.home_area_code: expected a Chinese area code"),
        ("[database]\nurl = 'mysql://x'\n", {}, "database.url: expected a postgresql:// URL"),
        ("[database]\npool_min = 0\n", {}, "database.pool_min: expected an integer 1-100, got 0"),
        (
            "[server]\nshutdown_grace_seconds = 'soon'\n",
            {},
            "server.shutdown_grace_seconds: expected a number",
        ),
        (
            "[security]\nsecret_key = 'hunter2'\n",
            {},
            "security.secret_key: secrets are read from the environment",
        ),
        ("[server\n", {}, "is not valid TOML"),
        ("server = 3\n", {}, "server: expected a table"),
    ],
)
def test_bad_values_name_key_value_and_expectation(
    tmp_path: Path, text: str, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), environ=environ)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_database_password_is_not_echoed_in_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, ""), environ={"CARELINE_DATABASE_URL": "mysql://u:s3cret@h/db"})
    assert "s3cret" not in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", environ={})


def test_secret_from_environment(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""), environ={"CARELINE_SECRET_KEY": "k" * 32})
    assert config.security.secret_key == "k" * 32


def test_secrets_never_show_in_repr(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, ""),
        environ={"CARELINE_SECRET_KEY": "s3cret-key", "TWILIO_AUTH_TOKEN": "tw1l10-token"},
    )
    assert config.sms.twilio_auth_token == "tw1l10-token"
    assert "s3cret-key" not in repr(config)
    assert "tw1l10-token" not in repr(config)
