"""`crucible up` killed with SIGKILL, then started again on the same state directory.

Nothing of the killed instance may outlive the next one: its embedded PostgreSQL is
adopted by the new instance and stopped when that one stops (issue 9, finding 9).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator

import trio

from testlib.sessions import create, new_token
from testlib.signing import Credentials, SigningClient

from ._support import (
    STOP_TIMEOUT,
    _process_alive,
    find_crucible,
    postmaster_pid,
    running_crucible_up,
    scratch_state,
    stop_and_check,
)


def test_a_restart_after_sigkill_owns_the_previous_database() -> None:
    with scratch_state("crucible-restart-") as (state_dir, log_path):
        with running_crucible_up(state_dir, log_path) as first:
            orphan = postmaster_pid(state_dir)
            assert orphan is not None and _process_alive(orphan)
            os.kill(first.process.pid, signal.SIGKILL)
            first.process.wait(timeout=STOP_TIMEOUT)
            assert _process_alive(orphan), "the database died with crucible; nothing to adopt"

        with running_crucible_up(state_dir, log_path) as second:
            assert postmaster_pid(state_dir) == orphan, "the restart should reuse the database"
            # A clean stop of the second instance stops the server the first one started.
            stop_and_check(second.process, state_dir, log_path)
            assert not _process_alive(orphan)


def test_a_command_next_to_a_live_instance_leaves_its_database_running() -> None:
    with (
        scratch_state("crucible-attach-") as (state_dir, log_path),
        running_crucible_up(state_dir, log_path) as server,
    ):
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
        stop_and_check(server.process, state_dir, log_path)


TICKING = """\
import time
for i in range(1000):
    print('tick', i, flush=True)
    time.sleep(0.1)
"""


async def test_a_run_in_progress_keeps_its_time_limit_across_a_sigkill() -> None:
    """The exact report of issue 9 (finding 9): `crucible up` killed with SIGKILL while a
    run printed, then started again: the run must still end at its time limit."""
    limit = 8
    with scratch_state("crucible-runlimit-") as (state_dir, log_path):
        config = state_dir.parent / "crucible.toml"
        config.write_text(f"[agent]\nmax_exec_seconds = {limit}\n")
        with running_crucible_up(state_dir, log_path, "--config", str(config)) as first:
            creds = Credentials(first.access_key, first.secret_key)
            token = new_token()
            async with _client(first.endpoint, creds) as client:
                assert (await create(client, token)).status_code == 201
                started = trio.current_time()
                response = await client.post(
                    f"/kernel/{token}", json={"mode": "query", "code": TICKING, "runId": None}
                )
                assert response.json()["result"]["status"] == "continued"
            os.kill(first.process.pid, signal.SIGKILL)
            first.process.wait(timeout=STOP_TIMEOUT)

        with running_crucible_up(state_dir, log_path, "--config", str(config)) as second:
            async with _client(second.endpoint, creds) as client:
                with trio.fail_after(limit + 30):
                    while (await client.get(f"/kernel/{token}")).status_code != 404:
                        await trio.sleep(0.2)
                ended = trio.current_time() - started
            # Killed and restarted within the limit, the run ended at about the limit,
            # not at the image's 30 s nor never (it would print for 100 s).
            assert ended < limit + 8, (ended, log_path.read_text()[-2000:])
            stop_and_check(second.process, state_dir, log_path)


@contextlib.asynccontextmanager
async def _client(endpoint: str, creds: Credentials) -> AsyncIterator[SigningClient]:
    client = SigningClient(endpoint, creds)
    try:
        yield client
    finally:
        await client.aclose()
