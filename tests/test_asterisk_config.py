"""`[[asterisk]]` tables: every key checked, errors naming the table and key, secrets from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatch.config import DEFAULT_CONFIG_PATH, ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_documented_example_in_config_toml_is_valid(tmp_path: Path) -> None:
    """The commented [[asterisk]] table in config.toml, uncommented, loads with its defaults."""
    text = DEFAULT_CONFIG_PATH.read_text(encoding="utf-8")
    block = text[text.index("# [[asterisk]]") :]
    lines = [line[2:] if line.startswith("# ") else "" for line in block.splitlines()]
    config = load_config(write(tmp_path, "\n".join(lines)), environ={"CARELINE_AMI_SECRET": "s3cret"})
    (pbx,) = config.asterisk
    assert (pbx.name, pbx.host, pbx.port, pbx.username, pbx.secret) == (
        "pbx1",
        "127.0.0.1",
        5038,
        "careline",
        "s3cret",
    )
    assert pbx.emergency_dids == ("123491",)
    assert "s3cret" not in repr(config)


def test_no_asterisk_by_default() -> None:
    assert load_config(environ={}).asterisk == ()


def test_each_server_gets_its_own_secret(tmp_path: Path) -> None:
    path = write(tmp_path, '[[asterisk]]\nname = "pbx-a"\n\n[[asterisk]]\nname = "pbx-b"\nport = 5039\n')
    config = load_config(path, environ={"CARELINE_AMI_SECRET": "both", "CARELINE_AMI_SECRET_PBX_B": "only-b"})
    assert [(a.name, a.port, a.secret) for a in config.asterisk] == [
        ("pbx-a", 5038, "both"),
        ("pbx-b", 5039, "only-b"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[asterisk]]\nname = "a"\n[[asterisk]]\nname = "b"\nport = "x"\n',
            "asterisk[1].port: expected an integer 1-65535, got 'x'",
        ),
        ("[[asterisk]]\nport = 5038\n", "asterisk[0].name: is required (a short name such as pbx1)"),
        ('[[asterisk]]\nname = "PBX 1"\n', "asterisk[0].name: expected a short name"),
        (
            '[[asterisk]]\nname = "a"\n[[asterisk]]\nname = "a"\n',
            "asterisk[1].name: 'a' is already the name of asterisk[0]",
        ),
        (
            '[[asterisk]]\nname = "a"\nsecret = "x"\n',
            "asterisk[0].secret: secrets are read from the environment only",
        ),
        ('[[asterisk]]\nname = "a"\nprot = 1\n', "asterisk[0].prot: unknown key"),
        (
            '[[asterisk]]\nname = "a"\nhotline_dids = ["12349", "abc"]\n',
            "asterisk[0].hotline_dids: expected a list of numbers",
        ),
        (
            '[[asterisk]]\nname = "a"\noperator_channel = "PJSIP/8001"\n',
            "asterisk[0].operator_channel: expected a channel with {extension}",
        ),
        ('[asterisk]\nname = "a"\n', "asterisk: expected an array of tables [[asterisk]]"),
    ],
)
def test_bad_tables_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, text), environ={})
    assert str(raised.value).startswith(message)
