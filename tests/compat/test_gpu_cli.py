"""The official client asks for GPUs (``-r gpu=N``, sent as ``instanceGPUs``) from a
`crucible up` whose agent has two mock devices, and its admin CLI shows them."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from ._support import RunningCrucible, cli, launched_crucible

pytestmark = pytest.mark.compat

CONFIG = """
[agent]
accelerators = ["mock"]

[accelerators.mock]
devices = 2
memory = "16GiB"
mode = "discrete"
"""
SHOW = "import os; print('devices=' + os.environ['CUDA_VISIBLE_DEVICES'])"


@pytest.fixture(scope="module")
def gpu_server() -> Iterator[RunningCrucible]:
    with launched_crucible(config_text=CONFIG) as server:
        yield server


def _table(output: str) -> list[dict[str, str]]:
    """A tabulate table (header, dashed rule, rows) as dicts; columns are 2+ spaces apart."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    rule = next(i for i, line in enumerate(lines) if set(line.replace(" ", "")) == {"-"})
    starts = [
        i for i, ch in enumerate(lines[rule]) if ch == "-" and (i == 0 or lines[rule][i - 1] == " ")
    ]
    bounds = [*starts[1:], None]

    def cells(line: str) -> list[str]:
        return [line[a:b].strip() for a, b in zip(starts, bounds, strict=True)]

    header = cells(lines[rule - 1])
    return [dict(zip(header, cells(line), strict=True)) for line in lines[rule + 1 :]]


def _agent_gpus(server: RunningCrucible) -> tuple[str, str]:
    listed = cli(server, "admin", "agents")
    assert listed.returncode == 0, listed.stderr
    (agent,) = _table(listed.stdout)
    return agent["Total GPU Cores"], agent["Used GPU Cores"]


def test_run_with_a_gpu_prints_its_device(gpu_server: RunningCrucible) -> None:
    result = cli(gpu_server, "run", "--rm", "-r", "gpu=1", "python", "-c", SHOW)
    assert result.returncode == 0, result.stderr
    assert "devices=0" in result.stdout.splitlines(), result.stdout


def test_admin_agents_shows_the_gpu_slots(gpu_server: RunningCrucible) -> None:
    assert _agent_gpus(gpu_server) == ("2", "0")
    name = "gpu" + secrets.token_hex(4)
    started = cli(gpu_server, "start", "-t", name, "-r", "gpu=1", "python")
    assert started.returncode == 0, started.stderr
    try:
        assert _agent_gpus(gpu_server) == ("2", "1")
        session = cli(gpu_server, "admin", "session", name)
        assert session.returncode == 0, session.stderr
        assert "GPU Cores: 1.0" in session.stdout.splitlines(), session.stdout
    finally:
        assert cli(gpu_server, "terminate", name).returncode == 0
    assert _agent_gpus(gpu_server) == ("2", "0")


@pytest.mark.parametrize("gpus", ["-1", "abc", "0.001", "0.5"])
def test_bad_gpu_requests_are_refused(gpu_server: RunningCrucible, gpus: str) -> None:
    # The CLI prints a problem's title; the detail (which the session tests check) says
    # what is wrong with the number.
    result = cli(gpu_server, "run", "--rm", "-r", f"gpu={gpus}", "python", "-c", SHOW)
    assert result.returncode != 0
    assert "400" in result.stderr, result.stderr
    assert "Missing or invalid API parameters." in result.stderr
