"""`crucible up` killed with SIGKILL, then started again on the same state directory.

Nothing of the killed instance may outlive the next one: its embedded PostgreSQL is
adopted by the new instance and stopped when that one stops (issue 9, finding 9).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from ._support import (
    STOP_TIMEOUT,
    _process_alive,
    find_crucible,
    postmaster_pid,
    start_crucible_up,
    stop_and_check,
    stop_orphaned_postgres,
)


def test_a_restart_after_sigkill_owns_the_previous_database() -> None:
    base = Path(tempfile.mkdtemp(prefix="crucible-restart-", dir="/tmp"))
    state_dir, log_path = base / "state", base / "crucible.log"
    procs: list[subprocess.Popen[str]] = []
    try:
        first, _ = start_crucible_up(state_dir, log_path)
        procs.append(first)
        orphan = postmaster_pid(state_dir)
        assert orphan is not None and _process_alive(orphan)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=STOP_TIMEOUT)
        assert _process_alive(orphan), "the database died with crucible; nothing to adopt"

        second, _ = start_crucible_up(state_dir, log_path)
        procs.append(second)
        assert postmaster_pid(state_dir) == orphan, "the restart should reuse the database"
        # A clean stop of the second instance stops the server the first one started.
        stop_and_check(second, state_dir, log_path)
        assert not _process_alive(orphan)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        stop_orphaned_postgres(state_dir)
        shutil.rmtree(base, ignore_errors=True)


def test_a_command_next_to_a_live_instance_leaves_its_database_running() -> None:
    base = Path(tempfile.mkdtemp(prefix="crucible-attach-", dir="/tmp"))
    state_dir, log_path = base / "state", base / "crucible.log"
    proc: subprocess.Popen[str] | None = None
    try:
        proc, _ = start_crucible_up(state_dir, log_path)
        postmaster = postmaster_pid(state_dir)
        listed = subprocess.run(
            [find_crucible(), "keypair", "list", "--state-dir", str(state_dir), "--json"],
            capture_output=True,
            text=True,
            timeout=STOP_TIMEOUT,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
        assert postmaster_pid(state_dir) == postmaster and postmaster is not None
        assert _process_alive(postmaster), "the keypair command stopped crucible up's database"
        stop_and_check(proc, state_dir, log_path)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
        stop_orphaned_postgres(state_dir)
        shutil.rmtree(base, ignore_errors=True)
