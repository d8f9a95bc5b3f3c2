"""`crucible up` runs its agent in a process of its own (`crucible.local_agent`): the
agent process killed with SIGKILL under load is replaced and keeps the kernels; the
manager's process killed with SIGKILL takes no agent along and leaves none behind; a
graceful stop stops both."""

from __future__ import annotations

import os
import secrets
import signal
import time
from pathlib import Path

import httpx
import pytest
import trio

from testlib.signing import SigningClient

from ._liveness import Liveness, signed_client
from ._support import (
    STOP_TIMEOUT,
    RunningCrucible,
    _process_alive,
    launched_crucible,
    running_crucible_up,
    scratch_state,
    stop_and_check,
)

pytestmark = pytest.mark.compat

REPLACE_TIMEOUT = 60.0
CONFIG = "[ratelimit]\npublic_limit = 100000\n[agent]\nheartbeat_interval = 1.0\n"


def agent_processes(parent: int) -> list[int]:
    """The pids of `parent`'s children running ``up-agent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == parent and b"up-agent" in cmdline and stat.rpartition(")")[2].split()[0] != "Z":
            found.append(int(entry.name))
    return found


def wait_until_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _process_alive(pid):
        assert time.monotonic() < deadline, f"process {pid} is still alive"
        time.sleep(0.1)


async def run(client: SigningClient, token: str, code: str) -> httpx.Response:
    return await client.post(f"/kernel/{token}", json={"mode": "query", "code": code})


async def new_session(client: SigningClient, state: str) -> str:
    token = "ap" + secrets.token_hex(4)
    body = {"lang": "python", "clientSessionToken": token}
    assert (await client.post("/kernel/create", json=body)).status_code == 201
    response = await run(client, token, f"kept = {state!r}")
    assert response.status_code == 200, response.text
    return token


def test_the_agent_runs_in_a_process_of_its_own() -> None:
    with launched_crucible(config_text=CONFIG) as server:
        children = agent_processes(server.process.pid)
        assert len(children) == 1, children
        # A session of its own: a terminal's Ctrl-C reaches only the manager's process,
        # which ends the sessions through the agent before it stops it.
        assert os.getsid(children[0]) == children[0]
    assert not _process_alive(children[0]), "the agent process outlived crucible up"


async def _load(client: SigningClient, token: str, until: trio.Event, seen: list[int]) -> None:
    while not until.is_set():
        try:
            seen.append((await run(client, token, "print(1)")).status_code)
        except httpx.TransportError:
            seen.append(-1)  # the manager stopped answering: never allowed here
        await trio.sleep(0.01)


async def _kill_agent_under_load(server: RunningCrucible) -> None:
    pid = server.process.pid
    (agent,) = agent_processes(pid)
    async with signed_client(server) as client:
        tokens = [await new_session(client, f"state{i}") for i in range(4)]
        done, seen = trio.Event(), list[int]()
        async with trio.open_nursery() as nursery:
            for token in tokens:
                nursery.start_soon(_load, client, token, done, seen)
            await trio.sleep(1.0)
            before = len(seen)
            os.kill(agent, signal.SIGKILL)
            with trio.fail_after(REPLACE_TIMEOUT):
                while not (new := [p for p in agent_processes(pid) if p != agent]):
                    await trio.sleep(0.1)
                # Executes succeed again on the same sessions.
                while seen[-8:].count(200) < 8:
                    await trio.sleep(0.1)
            done.set()
        assert before > 0 and len(new) == 1
        # The manager answered every request: 200, or a 5xx while the agent was away;
        # never a transport error, never a session ended (404).
        assert -1 not in seen and 404 not in seen, sorted(set(seen))
        assert all(code == 200 or code >= 500 for code in seen), sorted(set(seen))
        for index, token in enumerate(tokens):  # the new agent recovered each kernel
            response = await run(client, token, "print(kept)")
            assert response.json()["result"]["console"] == [["stdout", f"state{index}\n"]]


def test_a_killed_agent_process_is_replaced_under_load_and_keeps_the_kernels() -> None:
    with launched_crucible(config_text=CONFIG) as server, Liveness(server) as watch:
        trio.run(_kill_agent_under_load, server)
        watch.wait_polls()
        watch.assert_alive()
        log = server.log_path.read_text(errors="replace")
        assert "the agent process failed" in log, log[-3000:]


def test_a_killed_manager_process_leaves_no_agent_behind() -> None:
    with scratch_state("crucible-agentproc-") as (state_dir, log_path):
        with running_crucible_up(state_dir, log_path) as first:
            (agent,) = agent_processes(first.process.pid)
            os.kill(first.process.pid, signal.SIGKILL)
            first.process.wait(timeout=STOP_TIMEOUT)
            # Its stdin closed with the manager: the agent stops (its kernels stay).
            wait_until_gone(agent, STOP_TIMEOUT)
        with running_crucible_up(state_dir, log_path) as second:
            assert len(agent_processes(second.process.pid)) == 1
            stop_and_check(second.process, state_dir, log_path)
