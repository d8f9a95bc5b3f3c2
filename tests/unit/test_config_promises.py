"""What the configuration promises (issue 10, item 10): relative paths are taken from the
working directory; a bad manager URL, or a command's missing setting, is one line
``file: key: message`` and exit status 2, found when the configuration loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import crucible.daemon
from crucible.cli import main
from crucible.config import Config, ConfigError, config_from_dict, load_config


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, source="test.toml")
    return info.value.problems


# -- relative paths ------------------------------------------------------------------------


def test_a_relative_state_dir_is_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = config_from_dict({"state_dir": "state/../here"})
    assert config.state_dir == str(tmp_path / "here")
    assert config.state_path == tmp_path / "here"
    # The command line's --state-dir goes the same way.
    assert load_config(None, {"state_dir": "cli"}).state_path == tmp_path / "cli"
    assert config_from_dict({"state_dir": "~/x"}).state_path == Path("~/x").expanduser()
    assert Path(config_from_dict({}).state_dir).is_absolute()


def test_a_relative_local_storage_path_is_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    hosts = {"a": {"type": "local", "path": "folders"}, "b": {"type": "s3", "path": "bucket"}}
    config = config_from_dict({"storage": {"default_host": "a", "hosts": hosts}})
    assert config.storage.hosts["a"].path == str(tmp_path / "folders")
    # Another plugin's path may be no file at all (a bucket, a URL): left as written.
    assert config.storage.hosts["b"].path == "bucket"
    # Empty stays empty: the local plugin then uses <state_dir>/vfolders.
    assert config_from_dict({}).storage.hosts["local"].path == ""


def test_an_empty_state_dir_is_refused() -> None:
    assert problems_of({"state_dir": ""}) == ["state_dir: must be a directory path"]


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    """Run the CLI's daemon commands with the servers replaced: the configs they got."""
    seen: list[Config] = []

    async def serve(config: Config, **_: Any) -> None:
        seen.append(config)

    monkeypatch.setattr(crucible.daemon, "serve_manager", serve)
    monkeypatch.setattr(crucible.daemon, "serve_agent", serve)
    return seen


@pytest.mark.parametrize("command", ["up", "manager", "agent"])
def test_each_daemon_gets_an_absolute_state_dir(
    command: str,
    started: list[Config],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "c.toml"
    config.write_text(
        '[cluster]\nsecret = "s3cret"\n[agent]\nmanager_urls = ["ws://127.0.0.1:9"]\n'
        '[logging]\nlevel = "WARNING"\n'
    )
    assert main([command, "--config", str(config), "--state-dir", "rel/state"]) == 0
    assert capsys.readouterr().err == ""
    (got,) = started
    assert got.state_path == tmp_path / "rel" / "state"


# -- manager URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://10.0.0.5:8081", "must be a WebSocket URL: write ws://10.0.0.5:8081"),
        ("https://m.example:443/api", "must be a WebSocket URL: write wss://m.example:443/api"),
        ("10.0.0.5:8081", "must be a ws:// or wss:// URL"),
        ("ftp://m", "must be a ws:// or wss:// URL"),
        ("ws://", "names no host"),
        ("ws://:8081", "names no host"),
        ("ws://m:99999", "is not a URL (Port out of range 0-65535)"),
        ("ws://m:http", "is not a URL"),
        ("ws://m:0", "names port 0"),
        ("ws://[::1", "is not a URL (Invalid IPv6 URL)"),
        ("ws://user:pw@m:8081", "must not carry a user or password"),
        ("ws://m:8081/?x=1", "must not have a query or fragment"),
        ("ws://m:8081#top", "must not have a query or fragment"),
        ("ws://m :8081", "is not a URL (spaces or control characters)"),
        ("ws://m:8081\n", "is not a URL (spaces or control characters)"),
        ("", "must be a ws:// or wss:// URL"),
    ],
)
def test_bad_manager_urls_are_config_errors(url: str, message: str) -> None:
    good = "ws://127.0.0.1:8081"
    (problem,) = problems_of({"agent": {"manager_urls": [good, url]}})
    key, _, text = problem.partition(": ")
    assert key == "agent.manager_urls[1]"
    assert message in text
    assert "\n" not in problem


@pytest.mark.parametrize(
    "url", ["ws://127.0.0.1:8081", "wss://manager.example", "ws://[::1]:8081/prefix/", "ws://m"]
)
def test_good_manager_urls_pass(url: str) -> None:
    assert config_from_dict({"agent": {"manager_urls": [url]}}).agent.manager_urls == [url]


@pytest.fixture
def http_url_config(tmp_path: Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        '[cluster]\nsecret = "s3cret"\n[agent]\nmanager_urls = ["http://127.0.0.1:8081"]\n'
    )
    return path


@pytest.mark.parametrize("command", ["up", "manager", "agent"])
def test_an_http_manager_url_is_one_line_and_exit_2(
    command: str, http_url_config: Path, started: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--config", str(http_url_config)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and started == []
    assert err.splitlines() == [
        f"{http_url_config}: agent.manager_urls[0]: 'http://127.0.0.1:8081' must be a "
        "WebSocket URL: write ws://127.0.0.1:8081"
    ]


def test_an_http_manager_url_exits_2_without_a_traceback(http_url_config: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "crucible", "agent", "--config", str(http_url_config)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"{http_url_config}: agent.manager_urls[0]: 'http://127.0.0.1:8081' must be a "
        "WebSocket URL: write ws://127.0.0.1:8081"
    ]


# -- what `crucible agent` needs -------------------------------------------------------------


def test_crucible_agent_needs_managers_and_the_secret(
    tmp_path: Path, started: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["agent", "--state-dir", str(tmp_path)]) == 2
    assert started == []
    assert capsys.readouterr().err.splitlines() == [
        "<defaults>: agent.manager_urls: crucible agent needs the managers' ws:// URLs",
        "<defaults>: cluster.secret: crucible agent needs the managers' shared secret",
    ]
    # `crucible up` needs neither: its agent joins its own manager with a generated secret.
    assert main(["up", "--state-dir", str(tmp_path)]) == 0
    assert len(started) == 1


# -- retry delays ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [[], [0], [1.0, -2], ["1"], [True], 5, [float("inf")]])
def test_bad_delays(value: object) -> None:
    message = "must be a non-empty list of positive numbers of seconds"
    assert problems_of({"supervision": {"restart_delays": value}}) == [
        f"supervision.restart_delays: {message}"
    ]
    assert problems_of({"agent": {"manager_reconnect_delays": value}}) == [
        f"agent.manager_reconnect_delays: {message}"
    ]


def test_delays_are_kept_as_a_tuple_of_floats() -> None:
    config = config_from_dict({"supervision": {"restart_delays": [1, 2.5]}})
    assert config.supervision.restart_delays == (1.0, 2.5)
