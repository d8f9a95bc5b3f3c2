"""The compatibility suite's fixture: one live `crucible up` for the whole test session."""

from __future__ import annotations

import queue
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._support import (
    STOP_TIMEOUT,
    RunningCrucible,
    find_crucible,
    read_lines,
    stop_and_check,
    stop_orphaned_postgres,
    wait_for_announcement,
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
    argv = [find_crucible(), "up", "--bind", "127.0.0.1:0", "--state-dir", str(state_dir)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True
        )
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=read_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    try:
        announced = wait_for_announcement(proc, lines, log_path)
        server = RunningCrucible(
            endpoint=announced["BACKEND_ENDPOINT"],
            access_key=announced["BACKEND_ACCESS_KEY"],
            secret_key=announced["BACKEND_SECRET_KEY"],
            state_dir=state_dir,
            log_path=log_path,
        )
        yield server
        stop_and_check(proc, state_dir, log_path)
    finally:
        # Only after a failure above: never leave the server or its database running.
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
        stop_orphaned_postgres(state_dir)
        shutil.rmtree(base, ignore_errors=True)
