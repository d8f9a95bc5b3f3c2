"""The compatibility suite's fixture: one live `crucible up` for the whole test session."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from ._support import (
    RunningCrucible,
    kill_if_running,
    scratch_state,
    start_crucible_up,
    stop_and_check,
)


@pytest.fixture(scope="session")
def crucible_server() -> Iterator[RunningCrucible]:
    """`crucible up --bind 127.0.0.1:0` in a fresh state directory, stopped with SIGINT.

    Teardown asserts the graceful stop contract: exit code 0 within STOP_TIMEOUT, and the
    embedded PostgreSQL it started is gone.
    """
    with scratch_state("crucible-compat-") as (state_dir, log_path):
        proc: subprocess.Popen[str] | None = None
        try:
            proc, server = start_crucible_up(state_dir, log_path)
            yield server
            stop_and_check(proc, state_dir, log_path)
        finally:
            kill_if_running(proc)
