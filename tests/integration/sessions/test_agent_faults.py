"""Faults around the agent: kill -9 and restart, with real processes and containers."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager
from pathlib import Path

import attrs
import trio

from crucible.db.pool import Database
from crucible.keypairs import KeypairRepository, NewKeypair
from testlib.processes import (
    crucible_process,
    free_port,
    open_client,
    wait_for_agent,
    write_cluster_config,
)
from testlib.sessions import (
    agent_containers,
    create,
    execute,
    new_token,
    removing_containers,
    stream_text,
)
from testlib.signing import Credentials, SigningClient

SECRET = "fault-test-secret-0123456789abcdef"


@attrs.define
class _Faults:
    """A manager process, a client of it, and how to start agents for it."""

    state_dir: Path
    dsn: str
    port: int
    agent_id: str
    config: Path
    log: Path
    client: SigningClient

    def agent(self, config: Path | None = None) -> AbstractContextManager[subprocess.Popen[bytes]]:
        return crucible_process("agent", "--config", str(config or self.config), log=self.log)

    def config_with(self, agent_extra: str, name: str) -> Path:
        return write_cluster_config(
            self.state_dir,
            self.dsn,
            self.port,
            self.agent_id,
            secret=SECRET,
            agent_extra=agent_extra,
            name=name,
        )


@asynccontextmanager
async def _faults(
    pg_dsn: str, db: Database, state_dir: Path, *, agent_extra: str = ""
) -> AsyncIterator[_Faults]:
    agent_id = f"fault-{state_dir.name}"
    port = free_port()
    config = write_cluster_config(
        state_dir, pg_dsn, port, agent_id, secret=SECRET, agent_extra=agent_extra
    )
    log = state_dir / "processes.log"
    kp = await KeypairRepository(db).create(NewKeypair("fault@test"))
    async with removing_containers(agent_id):
        with crucible_process("manager", "--config", str(config), log=log):
            creds = Credentials(kp.access_key, kp.secret_key)
            async with open_client(f"http://127.0.0.1:{port}", creds) as client:
                yield _Faults(state_dir, pg_dsn, port, agent_id, config, log, client)


async def _until_answering(client: SigningClient, token: str, code: str) -> None:
    """Run `code` as soon as the session answers again (its agent is back)."""
    with trio.fail_after(30):
        while True:
            response = await client.post(f"/kernel/{token}", json={"mode": "query", "code": code})
            if response.status_code == 200:
                return
            await trio.sleep(0.3)


async def test_agent_kill_and_restart(
    docker_ready: None, pg_dsn: str, db: Database, short_state_dir: Path
) -> None:
    async with _faults(pg_dsn, db, short_state_dir) as faults:
        client, agent_id = faults.client, faults.agent_id
        with faults.agent() as agent:
            await wait_for_agent(db, agent_id, "ALIVE")
            kept = new_token()
            assert (await create(client, kept)).status_code == 201, faults.log.read_text()
            await execute(client, kept, "x = 'survived'")
            os.kill(agent.pid, signal.SIGKILL)
            agent.wait(10)

        # A quick restart recovers the kernel, state and all.
        with faults.agent() as agent:
            await _until_answering(client, kept, "print(x)")
            results = await execute(client, kept, "print(x)")
            assert stream_text(results) == "survived\n"

            # Killed for longer than agent_lost_after: its sessions end...
            os.kill(agent.pid, signal.SIGKILL)
            agent.wait(10)
            await wait_for_agent(db, agent_id, "LOST")
            with trio.fail_after(10):
                while (await client.get(f"/kernel/{kept}")).status_code != 404:
                    await trio.sleep(0.2)

        # ...and when it comes back, it removes the containers nobody owns.
        with faults.agent():
            await wait_for_agent(db, agent_id, "ALIVE")
            with trio.fail_after(30):
                while await agent_containers(agent_id):
                    await trio.sleep(0.5)


#: Prints for longer than the time limit; meanwhile a thread keeps trying to pass for
#: the runner on the agent's socket (user code runs as the runner's uid), and says
#: when the agent hung up on it.
LONG_RUN = r"""
import json, socket, struct, threading, time
def impostor():
    while True:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect("/opt/crucible/ipc/agent.sock")
        except OSError:
            time.sleep(0.005)
            continue
        body = json.dumps({"op": "hello", "lang": "python", "protocol": 2, "run": None})
        try:
            s.sendall(struct.pack(">I", len(body)) + body.encode())
            answer = s.recv(64)
        except OSError:
            answer = b""
        if answer == b"":
            print("impostor refused", flush=True)
            return
        print("impostor answered", answer, flush=True)
        return
threading.Thread(target=impostor, daemon=True).start()
for i in range(400):
    print("tick", i, flush=True)
    time.sleep(0.1)
"""


async def test_a_run_keeps_its_time_limit_across_an_agent_restart(
    docker_ready: None, pg_dsn: str, db: Database, short_state_dir: Path
) -> None:
    """Issue 9, finding 9 (agent half): kill -9 of the agent mid-run, then a restart.
    The restarted agent adopts the run from the runner's hello: a `continue` keeps
    collecting its output, and it still ends as exec-timeout at about its limit."""
    limit = 10
    extra = f"max_exec_seconds = {limit}"
    async with _faults(pg_dsn, db, short_state_dir, agent_extra=extra) as faults:
        client, token = faults.client, new_token()
        with faults.agent() as agent:
            await wait_for_agent(db, faults.agent_id, "ALIVE")
            assert (await create(client, token)).status_code == 201, faults.log.read_text()
            started = trio.current_time()
            response = await client.post(
                f"/kernel/{token}", json={"mode": "query", "code": LONG_RUN}
            )
            assert response.status_code == 200, response.text
            run_id = response.json()["result"]["runId"]
            await trio.sleep(2.5)
            os.kill(agent.pid, signal.SIGKILL)
            agent.wait(10)

        with faults.agent():
            output, status = "", None
            with trio.fail_after(60):
                while status not in ("exec-timeout", "finished"):
                    response = await client.post(
                        f"/kernel/{token}",
                        json={"mode": "continue", "runId": run_id, "code": ""},
                    )
                    if response.status_code == 404:
                        break  # ended between two calls
                    if response.status_code != 200:
                        await trio.sleep(0.2)  # the agent is not back yet
                        continue
                    result = response.json()["result"]
                    status = result["status"]
                    output += "".join(i[1] for i in result["console"] if i[0] == "stdout")
            ended = trio.current_time() - started
            with trio.fail_after(15):
                while (await client.get(f"/kernel/{token}")).status_code != 404:
                    await trio.sleep(0.2)
    info = await db.fetchval(
        "SELECT status_info FROM kernels WHERE sess_id = $1 ORDER BY created_at DESC LIMIT 1",
        token,
    )
    assert status in ("exec-timeout", None), (status, output[-300:])
    assert info == "exec-timeout", (info, output[-300:])
    assert limit - 0.5 <= ended <= limit + 6, ended
    # The adopted run's output kept coming after the restart...
    assert "tick 60" in output, output[-300:]
    # ...from the real runner: the impostor was hung up on.
    assert "impostor refused" in output, output[-300:]
    assert "impostor answered" not in output


async def test_recovered_kernels_get_todays_time_limit(
    docker_ready: None, pg_dsn: str, db: Database, short_state_dir: Path
) -> None:
    """Limits are re-applied on recovery from the configuration of the agent that
    recovers, not only from what the kernel's labels say."""
    async with _faults(pg_dsn, db, short_state_dir) as faults:
        client, token = faults.client, new_token()
        lowered = faults.config_with("max_exec_seconds = 4", "lowered.toml")
        with faults.agent() as agent:
            await wait_for_agent(db, faults.agent_id, "ALIVE")
            assert (await create(client, token)).status_code == 201, faults.log.read_text()
            os.kill(agent.pid, signal.SIGKILL)
            agent.wait(10)
        with faults.agent(lowered):
            await _until_answering(client, token, "1")
            started = trio.current_time()
            results = await execute(client, token, "while True: pass")
            assert results[-1]["status"] == "exec-timeout"
            assert trio.current_time() - started < 10  # the image says 30
