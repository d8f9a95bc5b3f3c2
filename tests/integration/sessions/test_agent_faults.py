"""Faults around the agent: kill -9 and restart, with real processes and containers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import trio

from crucible.db.pool import Database
from crucible.keypairs import KeypairRepository
from testlib.sessions import (
    agent_containers,
    create,
    execute,
    new_token,
    remove_containers,
    stream_text,
)
from testlib.signing import Credentials, SigningClient

CRUCIBLE = [sys.executable, "-m", "crucible"]
SECRET = "fault-test-secret-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_config(
    state_dir: Path, dsn: str, port: int, agent_id: str, *, agent_extra: str = ""
) -> Path:
    path = state_dir / "crucible.toml"
    path.write_text(
        f"""
state_dir = "{state_dir}"
[manager]
bind = "127.0.0.1:{port}"
[database]
dsn = "{dsn}"
[cluster]
secret = "{SECRET}"
[agent]
id = "{agent_id}"
manager_urls = ["ws://127.0.0.1:{port}"]
heartbeat_interval = 0.5
{agent_extra}
[sessions]
agent_lost_after = 3.0
exec_flush_interval = 1.0
[logging]
level = "WARNING"
"""
    )
    return path


@contextmanager
def _process(*args: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen([*CRUCIBLE, *args], stdout=out, stderr=out)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


async def _agent_status(db: Database, agent_id: str) -> str | None:
    status: str | None = await db.fetchval("SELECT status FROM agents WHERE id = $1", agent_id)
    return status


async def _wait_for(db: Database, agent_id: str, status: str, timeout: float = 30) -> None:
    with trio.fail_after(timeout):
        while await _agent_status(db, agent_id) != status:
            await trio.sleep(0.1)


@asynccontextmanager
async def _client(port: int, creds: Credentials) -> AsyncIterator[SigningClient]:
    client = SigningClient(f"http://127.0.0.1:{port}", creds)
    client.http.timeout = 60
    try:
        yield client
    finally:
        await client.aclose()


async def test_agent_kill_and_restart(
    docker_ready: None, pg_dsn: str, db: Database, short_state_dir: Path
) -> None:
    agent_id = f"fault-{short_state_dir.name}"
    port = _free_port()
    config = _write_config(short_state_dir, pg_dsn, port, agent_id)
    log = short_state_dir / "processes.log"
    kp = await KeypairRepository(db).create("fault@test")
    creds = Credentials(kp.access_key, kp.secret_key)
    try:
        with _process("manager", "--config", str(config), log=log):
            async with _client(port, creds) as client:
                with _process("agent", "--config", str(config), log=log) as agent:
                    await _wait_for(db, agent_id, "ALIVE")
                    kept = new_token()
                    assert (await create(client, kept)).status_code == 201, log.read_text()
                    await execute(client, kept, "x = 'survived'")
                    os.kill(agent.pid, signal.SIGKILL)
                    agent.wait(10)

                # A quick restart recovers the kernel, state and all.
                with _process("agent", "--config", str(config), log=log) as agent:
                    with trio.fail_after(30):
                        while True:
                            response = await client.post(
                                f"/kernel/{kept}", json={"mode": "query", "code": "print(x)"}
                            )
                            if response.status_code == 200:
                                break
                            await trio.sleep(0.3)
                    results = await execute(client, kept, "print(x)")
                    assert stream_text(results) == "survived\n"

                    # Killed for longer than agent_lost_after: its sessions end...
                    os.kill(agent.pid, signal.SIGKILL)
                    agent.wait(10)
                    await _wait_for(db, agent_id, "LOST")
                    with trio.fail_after(10):
                        while (await client.get(f"/kernel/{kept}")).status_code != 404:
                            await trio.sleep(0.2)

                # ...and when it comes back, it removes the containers nobody owns.
                with _process("agent", "--config", str(config), log=log):
                    await _wait_for(db, agent_id, "ALIVE")
                    with trio.fail_after(30):
                        while await agent_containers(agent_id):
                            await trio.sleep(0.5)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(90):
            await remove_containers(await agent_containers(agent_id))


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
    agent_id = f"fault-{short_state_dir.name}"
    port = _free_port()
    config = _write_config(
        short_state_dir, pg_dsn, port, agent_id, agent_extra=f"max_exec_seconds = {limit}"
    )
    log = short_state_dir / "processes.log"
    kp = await KeypairRepository(db).create("fault@test")
    creds = Credentials(kp.access_key, kp.secret_key)
    try:
        with _process("manager", "--config", str(config), log=log):
            async with _client(port, creds) as client:
                token = new_token()
                with _process("agent", "--config", str(config), log=log) as agent:
                    await _wait_for(db, agent_id, "ALIVE")
                    assert (await create(client, token)).status_code == 201, log.read_text()
                    started = trio.current_time()
                    response = await client.post(
                        f"/kernel/{token}", json={"mode": "query", "code": LONG_RUN}
                    )
                    assert response.status_code == 200, response.text
                    run_id = response.json()["result"]["runId"]
                    await trio.sleep(2.5)
                    os.kill(agent.pid, signal.SIGKILL)
                    agent.wait(10)

                with _process("agent", "--config", str(config), log=log):
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
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(90):
            await remove_containers(await agent_containers(agent_id))


async def test_recovered_kernels_get_todays_time_limit(
    docker_ready: None, pg_dsn: str, db: Database, short_state_dir: Path
) -> None:
    """Limits are re-applied on recovery from the configuration of the agent that
    recovers, not only from what the kernel's labels say."""
    agent_id = f"fault-{short_state_dir.name}"
    port = _free_port()
    before = _write_config(short_state_dir, pg_dsn, port, agent_id)
    after = short_state_dir / "lowered.toml"
    after.write_text(
        before.read_text().replace(
            "heartbeat_interval = 0.5", "heartbeat_interval = 0.5\nmax_exec_seconds = 4"
        )
    )
    log = short_state_dir / "processes.log"
    kp = await KeypairRepository(db).create("fault@test")
    creds = Credentials(kp.access_key, kp.secret_key)
    try:
        with _process("manager", "--config", str(before), log=log):
            async with _client(port, creds) as client:
                token = new_token()
                with _process("agent", "--config", str(before), log=log) as agent:
                    await _wait_for(db, agent_id, "ALIVE")
                    assert (await create(client, token)).status_code == 201, log.read_text()
                    os.kill(agent.pid, signal.SIGKILL)
                    agent.wait(10)
                with _process("agent", "--config", str(after), log=log):
                    with trio.fail_after(30):
                        while True:
                            response = await client.post(
                                f"/kernel/{token}", json={"mode": "query", "code": "1"}
                            )
                            if response.status_code == 200:
                                break
                            await trio.sleep(0.3)
                    started = trio.current_time()
                    results = await execute(client, token, "while True: pass")
                    assert results[-1]["status"] == "exec-timeout"
                    assert trio.current_time() - started < 10  # the image says 30
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(90):
            await remove_containers(await agent_containers(agent_id))
