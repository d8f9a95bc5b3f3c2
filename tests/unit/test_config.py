"""Configuration errors: every problem at once, as ``file: a.b.c: message``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from crucible.cli import main
from crucible.config import Config, ConfigError, config_from_dict, load_config


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, source="test.toml")
    assert str(info.value) == "\n".join(f"test.toml: {p}" for p in info.value.problems)
    return info.value.problems


def test_defaults_are_valid() -> None:
    config = config_from_dict({})
    assert isinstance(config, Config)
    assert config.manager.bind == "127.0.0.1:8081"
    assert config.ratelimit.window == 900
    assert config.manager.clock_skew_seconds == 900


def test_all_problems_at_once() -> None:
    problems = problems_of(
        {
            "manager": {"bind": 8081, "max_body_bytes": -1, "colour": "blue"},
            "ratelimit": {"window": "900"},
            "logging": {"level": "LOUD"},
            "typo_section": {},
        }
    )
    assert sorted(problems) == sorted(
        [
            "manager.bind: expected str, got int",
            "manager.max_body_bytes: must be a positive integer",
            "manager.colour: unknown key",
            "ratelimit.window: expected int, got str",
            "logging.level: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
            "typo_section: unknown key",
        ]
    )


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"manager": {"bind": "localhost"}}, "manager.bind: must be HOST:PORT"),
        ({"manager": {"bind": "h:99999"}}, "manager.bind: must be HOST:PORT"),
        ({"manager": {"clock_skew_seconds": True}}, "manager.clock_skew_seconds: expected int, "
                                                    "got a boolean"),
        ({"manager": {"shutdown_timeout": "5"}}, "manager.shutdown_timeout: expected float, "
                                                 "got str"),
        ({"manager": {"path_prefix": "api/"}}, "manager.path_prefix: must be empty or start "
                                               "with '/' and not end with '/'"),
        ({"manager": 5}, None),
        ({"database": {"dsn": "mysql://x"}}, "database.dsn: must be a postgresql:// URL"),
        ({"database": {"pool_min_size": 5, "pool_max_size": 2}},
         "database.pool_min_size: must not exceed pool_max_size"),
        ({"bootstrap": {"access_key": "short"}}, "bootstrap.access_key: must be 20 upper-case "
                                                 "letters or digits"),
        ({"auth": {"keypair_cache_ttl": 0}}, "auth.keypair_cache_ttl: must be a positive number"),
        ({"state_dir": ["a"]}, "state_dir: expected str, got list"),
    ],
)
def test_single_problems(data: dict[str, Any], problem: str | None) -> None:
    problems = problems_of(data)
    assert len(problems) >= 1
    if problem is not None:
        assert problem in problems
    for line in problems:
        key, sep, message = line.partition(": ")
        assert sep and key and message, line
        assert "Traceback" not in line


def test_ints_are_accepted_as_floats() -> None:
    assert config_from_dict({"manager": {"shutdown_timeout": 3}}).manager.shutdown_timeout == 3.0


def test_secrets_stay_out_of_reprs() -> None:
    config = config_from_dict(
        {
            "database": {"dsn": "postgresql://u:hunter2@h/db"},
            "bootstrap": {"access_key": "AKIAABCDEFGHIJKLMNOP", "secret_key": "s" * 40},
        }
    )
    assert "hunter2" not in repr(config)
    assert "s" * 40 not in repr(config)


def test_load_config_file_problems(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text('[manager]\nbind = 1\n[nope]\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).splitlines() == [
        f"{path}: manager.bind: expected str, got int",
        f"{path}: nope: unknown key",
    ]


def test_load_config_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[manager\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_overrides_are_validated_too(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text('[manager]\nmax_body_bytes = 10\n', encoding="utf-8")
    config = load_config(path, {"manager": {"bind": "0.0.0.0:9000"}})
    assert config.manager.bind == "0.0.0.0:9000" and config.manager.max_body_bytes == 10
    with pytest.raises(ConfigError, match=r"manager\.bind"):
        load_config(path, {"manager": {"bind": "nowhere"}})


# -- the CLI refuses a bad file with exit status 2 and no traceback --------------------------


@pytest.fixture
def bad_toml(tmp_path: Path) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text('[manager]\nbind = 5\nbogus = 1\n[ratelimit]\nwindow = "x"\n',
                    encoding="utf-8")
    return path


EXPECTED_LINES = ("manager.bind: expected str, got int", "manager.bogus: unknown key",
                  "ratelimit.window: expected int, got str")


@pytest.mark.parametrize("command", [["up"], ["manager"], ["keypair", "list"]])
def test_cli_bad_config(
    bad_toml: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "--config", str(bad_toml)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    for line in EXPECTED_LINES:
        assert f"{bad_toml}: {line}" in err


def test_cli_config_before_command(bad_toml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        code = main(["--config", str(bad_toml), "up"])
        raise SystemExit(code)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"{bad_toml}: manager.bogus: unknown key" in err


def test_cli_bad_config_process_exit_status(bad_toml: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "crucible", "up", "--config", str(bad_toml)],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{bad_toml}: manager.bogus: unknown key" in result.stderr
