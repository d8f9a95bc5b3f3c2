"""A configuration problem found while a manager starts (a storage host its plugin
refuses) is reported like one found when the file loads: ``file: key: message``, exit
status 2, no traceback (issue 10, item 10).

Synchronous on purpose: the CLI calls `trio.run` itself.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from crucible.cli import main


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ('type = "no-such-plugin"', "storage.hosts.odd.type: no storage plugin 'no-such-plugin'"),
        ('type = "local"\n[storage.hosts.odd.options]\nx = 1', "storage.hosts.odd: the local "
                                                              "plugin takes no options: ['x']"),
    ],
)
def test_a_storage_host_refused_at_start_is_a_config_error(
    host: str, problem: str, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file
    with path.open("a", encoding="utf-8") as toml:
        toml.write(f'[storage]\ndefault_host = "odd"\n[storage.hosts.odd]\n{host}\n')
    assert main(["manager", "--config", str(path), "--bind", "127.0.0.1:0"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith(str(path))]
    assert line.startswith(f"{path}: {problem}")


def test_a_bind_address_taken_is_a_config_error(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        bind = f"127.0.0.1:{taken.getsockname()[1]}"
        assert main(["manager", "--config", str(path), "--bind", bind]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith(str(path))]
    assert line.startswith(f"{path}: manager.bind: cannot listen on {bind} (")
    assert "in use" in line


@pytest.mark.parametrize(
    ("tables", "problem"),
    [
        ('[agent]\naccelerators = ["gpux"]\n', "agent.accelerators: no accelerator plugin named"),
        (
            '[agent]\naccelerators = ["mock"]\n[accelerators.mock]\nmode = "half"\n',
            "accelerators.mock.mode: ",
        ),
    ],
)
def test_an_accelerator_refused_at_start_is_a_config_error(
    tables: str, problem: str, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file
    with path.open("a", encoding="utf-8") as toml:
        toml.write(tables)
    assert main(["up", "--config", str(path), "--bind", "127.0.0.1:0"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith(str(path))]
    assert line.startswith(f"{path}: {problem}")
