"""`crucible` commands as real processes, and waiting on what they do."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import trio

from crucible.db.pool import Database
from testlib.signing import Credentials, SigningClient

CRUCIBLE = [sys.executable, "-m", "crucible"]


def write_cluster_config(
    state_dir: Path,
    dsn: str,
    port: int,
    agent_id: str,
    *,
    secret: str,
    agent_extra: str = "",
    name: str = "crucible.toml",
    log_level: str = "WARNING",
) -> Path:
    """A configuration for a manager on `port` and an agent `agent_id` that joins it,
    written to ``state_dir/name``: quick heartbeats, an agent lost after 3 s."""
    path = state_dir / name
    path.write_text(
        f"""
state_dir = "{state_dir}"
[manager]
bind = "127.0.0.1:{port}"
[database]
dsn = "{dsn}"
[cluster]
secret = "{secret}"
[agent]
id = "{agent_id}"
manager_urls = ["ws://127.0.0.1:{port}"]
heartbeat_interval = 0.5
{agent_extra}
[sessions]
agent_lost_after = 3.0
exec_flush_interval = 1.0
[logging]
level = "{log_level}"
"""
    )
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def crucible_process(
    *args: str, log: Path, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``crucible ARGS`` with its output appended to `log`; stopped with SIGINT (then
    killed) when the block ends."""
    with log.open("ab") as out:
        proc = subprocess.Popen([*CRUCIBLE, *args], stdout=out, stderr=out, cwd=cwd)
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


async def agent_status(db: Database, agent_id: str) -> str | None:
    status: str | None = await db.fetchval("SELECT status FROM agents WHERE id = $1", agent_id)
    return status


async def wait_for_agent(db: Database, agent_id: str, status: str, timeout: float = 30) -> None:
    with trio.fail_after(timeout):
        while await agent_status(db, agent_id) != status:
            await trio.sleep(0.1)


@asynccontextmanager
async def open_client(url: str, creds: Credentials) -> AsyncIterator[SigningClient]:
    client = SigningClient(url, creds)
    client.http.timeout = 60
    try:
        yield client
    finally:
        await client.aclose()
