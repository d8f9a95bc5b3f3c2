"""The compatibility suite's fixture: one live `crucible up` for the whole test session."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._support import (
    STOP_TIMEOUT,
    RunningCrucible,
    start_crucible_up,
    stop_and_check,
    stop_orphaned_postgres,
)


@pytest.fixture(scope="session")
def crucible_server() -> Iterator[RunningCrucible]:
    """`crucible up --bind 127.0.0.1:0` in a fresh state directory, stopped with SIGINT.

    Teardown asserts the graceful stop contract: exit code 0 within STOP_TIMEOUT, and the
    embedded PostgreSQL it started is gone.
    """
    # Not under pytest's basetemp: another pytest run of the same user may prune that
    # while the embedded PostgreSQL (running as its own user) still needs it; the kernel
    # runner sockets also want a short path.
    base = Path(tempfile.mkdtemp(prefix="crucible-compat-", dir="/tmp"))
    state_dir = base / "state"
    log_path = base / "crucible.log"
    proc: subprocess.Popen[str] | None = None
    try:
        proc, server = start_crucible_up(state_dir, log_path)
        yield server
        stop_and_check(proc, state_dir, log_path)
    finally:
        # Only after a failure above: never leave the server or its database running.
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
        stop_orphaned_postgres(state_dir)
        shutil.rmtree(base, ignore_errors=True)
