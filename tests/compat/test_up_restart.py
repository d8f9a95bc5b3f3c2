"""`crucible up` killed with SIGKILL, then started again on the same state directory.

Nothing of the killed instance may outlive the next one: its embedded PostgreSQL is
adopted by the new instance and stopped when that one stops (issue 9, finding 9).
"""

from __future__ import annotations

import os
import signal
import subprocess

from ._support import (
    STOP_TIMEOUT,
    _process_alive,
    find_crucible,
    kill_if_running,
    postmaster_pid,
    scratch_state,
    start_crucible_up,
    stop_and_check,
)


def test_a_restart_after_sigkill_owns_the_previous_database() -> None:
    with scratch_state("crucible-restart-") as (state_dir, log_path):
        first, second = None, None
        try:
            first = start_crucible_up(state_dir, log_path).process
            orphan = postmaster_pid(state_dir)
            assert orphan is not None and _process_alive(orphan)
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=STOP_TIMEOUT)
            assert _process_alive(orphan), "the database died with crucible; nothing to adopt"

            second = start_crucible_up(state_dir, log_path).process
            assert postmaster_pid(state_dir) == orphan, "the restart should reuse the database"
            # A clean stop of the second instance stops the server the first one started.
            stop_and_check(second, state_dir, log_path)
            assert not _process_alive(orphan)
        finally:
            kill_if_running(first)
            kill_if_running(second)


def test_a_command_next_to_a_live_instance_leaves_its_database_running() -> None:
    with scratch_state("crucible-attach-") as (state_dir, log_path):
        proc: subprocess.Popen[str] | None = None
        try:
            proc = start_crucible_up(state_dir, log_path).process
            postmaster = postmaster_pid(state_dir)
            listed = subprocess.run(
                [find_crucible(), "keypair", "list", "--state-dir", str(state_dir), "--json"],
                capture_output=True,
                text=True,
                timeout=STOP_TIMEOUT,
                check=False,
            )
            assert listed.returncode == 0, listed.stderr
            assert postmaster is not None and postmaster_pid(state_dir) == postmaster
            assert _process_alive(postmaster), "the keypair command stopped the database"
            stop_and_check(proc, state_dir, log_path)
        finally:
            kill_if_running(proc)
