"""Inside `crucible up`, a failing agent is restarted while the manager keeps serving,
and a failing manager is restarted while the agent keeps its kernels (issue 9, finding
2): the same process throughout, and the sessions survive either failure."""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from testlib.signing import SigningClient

from ._liveness import Liveness, signed_client
from ._support import RunningCrucible, launched_crucible

pytestmark = pytest.mark.compat

WRAPPER = Path(__file__).with_name("faulty_up.py")
RESTART_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def faulty_server() -> Iterator[RunningCrucible]:
    config = "[ratelimit]\npublic_limit = 100000\n[agent]\nheartbeat_interval = 1.0\n"
    with launched_crucible(command=[sys.executable, str(WRAPPER)], config_text=config) as server:
        yield server


def _wait_for_log(server: RunningCrucible, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.log_path.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"no {text!r} in the log"
        time.sleep(0.1)


async def _print(client: SigningClient, name: str, code: str) -> str:
    body = {"mode": "query", "code": code, "runId": None}
    response = await client.post(f"/kernel/{name}", json=body)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["status"] == "finished", result
    return "".join(data for kind, data in result["console"] if kind == "stdout")


async def _fail_and_recover(
    server: RunningCrucible, client: SigningClient, part: str, state: str
) -> None:
    """Make `part` (agent or manager) fail while a session holds `state`; wait until the
    session answers again and check it kept that state."""
    name = f"{part}{secrets.token_hex(4)}"
    body: dict[str, str | None] = {"lang": "python", "clientSessionToken": name}
    assert (await client.post("/kernel/create", json=body)).status_code == 201
    assert await _print(client, name, f"kept = {state!r}\nprint('ok')") == "ok\n"
    (server.state_dir / f"fail-{part}").touch()
    await trio.to_thread.run_sync(_wait_for_log, server, f"the {part} failed", RESTART_TIMEOUT)
    with trio.fail_after(RESTART_TIMEOUT):
        while True:
            try:
                body = {"mode": "query", "code": "print(kept)", "runId": None}
                response = await client.post(f"/kernel/{name}", json=body)
                if response.status_code == 200:
                    break
                assert response.status_code >= 500, response.text  # away, not gone
            except httpx.TransportError:
                assert part == "manager"  # only the manager stops listening for a moment
            await trio.sleep(0.3)
    assert await _print(client, name, "print(kept)") == f"{state}\n"


async def test_a_failing_agent_is_restarted_while_the_manager_serves(
    faulty_server: RunningCrucible,
) -> None:
    with Liveness(faulty_server) as watch:
        async with signed_client(faulty_server) as client:
            # The new agent recovers the kernel, its state included, and links again.
            await _fail_and_recover(faulty_server, client, "agent", "state")
        watch.wait_polls()
        watch.assert_alive()
    log = faulty_server.log_path.read_text(errors="replace")
    assert "InjectedFailure" in log and "the agent failed" in log


async def test_a_failing_manager_is_restarted_and_the_agent_keeps_its_kernels(
    faulty_server: RunningCrucible,
) -> None:
    process = faulty_server.process
    pid = process.pid
    async with signed_client(faulty_server) as client:
        # Back at the same address, linked to the same agent, with the same kernel.
        await _fail_and_recover(faulty_server, client, "manager", "kernel")
    assert process.poll() is None and process.pid == pid
