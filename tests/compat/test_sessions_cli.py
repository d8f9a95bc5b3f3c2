"""The official client's CLI runs Python in Crucible, unmodified (spec 11, items 2-9)."""

from __future__ import annotations

import secrets

from ._support import RunningCrucible, cli


def token() -> str:
    return "compat" + secrets.token_hex(4)


def test_run_prints_the_answer(crucible_server: RunningCrucible) -> None:
    result = cli(crucible_server, "run", "--rm", "python", "-c", "print(6*7)")
    assert result.returncode == 0, result.stderr
    assert "42" in result.stdout.splitlines()


def test_run_reads_input_from_the_prompt(crucible_server: RunningCrucible) -> None:
    result = cli(
        crucible_server,
        "run",
        "--rm",
        "python",
        "-c",
        "name = input('name? ')\nprint('hello', name)",
        stdin_text="Crucible\n",
    )
    assert result.returncode == 0, result.stderr
    assert "hello Crucible" in result.stdout


def test_same_token_reuses_the_session(crucible_server: RunningCrucible) -> None:
    name = token()
    first = cli(crucible_server, "run", "-t", name, "python", "-c", "counter = 1")
    assert first.returncode == 0, first.stderr
    second = cli(crucible_server, "run", "-t", name, "python", "-c", "print(counter + 1)")
    assert second.returncode == 0, second.stderr
    assert "2" in second.stdout.splitlines()
    assert cli(crucible_server, "terminate", name).returncode == 0


def test_start_logs_terminate(crucible_server: RunningCrucible) -> None:
    name = token()
    started = cli(crucible_server, "start", "-t", name, "python")
    assert started.returncode == 0, started.stderr
    assert f"{name} is created" in started.stdout + started.stderr
    again = cli(crucible_server, "start", "-t", name, "python")
    assert again.returncode == 0
    assert "already" in (again.stdout + again.stderr).lower()
    logs = cli(crucible_server, "logs", name)
    assert logs.returncode == 0, logs.stderr
    ended = cli(crucible_server, "terminate", "-s", name)
    assert ended.returncode == 0, ended.stderr
    assert "cpu_used" in ended.stdout + ended.stderr  # the CLI prints the stats table
    gone = cli(crucible_server, "terminate", name)
    assert gone.returncode != 0
    assert "404" in gone.stderr
    assert "No such kernel." in gone.stderr  # the problem's title, as the CLI prints it
