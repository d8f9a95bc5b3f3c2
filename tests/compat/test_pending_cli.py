"""The pending queue through the official 18.12.3 CLI: on a ``crucible up`` whose agent
offers one core, a second ``backend.ai start`` waits (PENDING in ``admin sessions
--status ALL``,
``ps`` unharmed) and completes once the first session is terminated."""

from __future__ import annotations

import secrets
import subprocess
import time

import pytest

from ._support import REFERENCE_VENV, cli, launched_crucible, reference_client_env

pytestmark = pytest.mark.compat

ONE_CORE = "[agent]\ncpu_cores = 1\ncpu_overcommit = 1.0\n[sessions]\npending_timeout = 90.0\n"
WAIT = 60.0


def test_a_second_start_waits_in_the_queue_then_runs() -> None:
    holder, waiter = (f"pq{secrets.token_hex(4)}" for _ in range(2))
    with launched_crucible(config_text=ONE_CORE) as server:
        started = cli(server, "start", "-t", holder, "python")
        assert started.returncode == 0, started.stderr
        second = subprocess.Popen(
            [str(REFERENCE_VENV / "bin" / "backend.ai"), "start", "-t", waiter, "python"],
            env=reference_client_env(server),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + WAIT
            while True:
                # The 18.12 client knows no PENDING filter; ALL lists every status.
                listing = cli(server, "admin", "sessions", "--status", "ALL")
                assert listing.returncode == 0, listing.stderr
                line = next((ln for ln in listing.stdout.splitlines() if waiter in ln), "")
                if "PENDING" in line:
                    break
                assert time.monotonic() < deadline, listing.stdout
                time.sleep(0.3)
            assert second.poll() is None  # still waiting for room
            listed = cli(server, "ps")
            assert listed.returncode == 0, listed.stderr
            assert holder in listed.stdout
            assert cli(server, "terminate", holder).returncode == 0
            out, err = second.communicate(timeout=WAIT)
            assert second.returncode == 0, out + err
            assert waiter in cli(server, "ps", "--id-only").stdout.split()
        finally:
            if second.poll() is None:
                second.kill()
                second.communicate(timeout=10)
            cli(server, "terminate", waiter)
