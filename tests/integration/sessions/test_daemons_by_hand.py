"""A manager and an agent started by hand, as an operator does (issue 10, item 10):
relative ``--state-dir`` paths, and the keys `crucible manager` hands over in
``client.env``."""

from __future__ import annotations

import stat
from pathlib import Path

import trio

from crucible.db.pool import Database
from testlib.processes import (
    crucible_process,
    free_port,
    open_client,
    wait_for_agent,
    write_cluster_config,
)
from testlib.sessions import create, execute, new_token, removing_containers, stream_text
from testlib.signing import Credentials

SECRET = "by-hand-test-secret-0123456789abcdef"


def _read_env(path: Path) -> dict[str, str]:
    pairs = (line.partition("=") for line in path.read_text().splitlines())
    return {key: value for key, _, value in pairs}


async def _appears(path: Path, timeout: float = 60) -> bool:
    with trio.move_on_after(timeout):
        while not await trio.Path(path).exists():
            await trio.sleep(0.1)
        return True
    return False


async def test_a_manager_and_an_agent_on_relative_state_dirs(
    docker_ready: None, pg_dsn: str, db: Database, short_state_dir: Path
) -> None:
    port = free_port()
    agent_id = f"by-hand-{short_state_dir.name}"
    # The file's state_dir is overridden: each process gets its own, relative one.
    config = write_cluster_config(
        short_state_dir, pg_dsn, port, agent_id, secret=SECRET, log_level="INFO"
    )
    log = short_state_dir / "processes.log"
    # Both relative to the directory they are started in, as `cd /srv && crucible ...`.
    manager = ["manager", "--config", str(config), "--state-dir", "m"]
    agent = ["agent", "--config", str(config), "--state-dir", "a"]
    async with removing_containers(agent_id):
        with crucible_process(*manager, log=log, cwd=short_state_dir) as manager_proc:
            client_env = short_state_dir / "m" / "client.env"
            assert await _appears(client_env), log.read_text()
            assert manager_proc.poll() is None, log.read_text()
            # The bootstrap admin's keys, for its owner only, and the log says where.
            assert stat.S_IMODE(client_env.stat().st_mode) == 0o600
            assert f"are in {client_env}" in log.read_text()
            keys = _read_env(client_env)
            assert keys["BACKEND_ENDPOINT"] == f"http://127.0.0.1:{port}"

            with crucible_process(*agent, log=log, cwd=short_state_dir):
                await wait_for_agent(db, agent_id, "ALIVE")
                admin = Credentials(keys["BACKEND_ACCESS_KEY"], keys["BACKEND_SECRET_KEY"])
                async with open_client(keys["BACKEND_ENDPOINT"], admin) as client:
                    token = new_token()
                    created = await create(client, token)
                    assert created.status_code == 201, created.text + log.read_text()
                    results = await execute(client, token, "print(6 * 7)")
                    assert stream_text(results) == "42\n"
                    # The kernel's scratch lives in the agent's state directory.
                    assert [p.name for p in (short_state_dir / "a" / "agent" / "k").iterdir()]
                    response = await client.request("DELETE", f"/kernel/{token}")
                    assert response.status_code == 200, response.text
    assert "Traceback" not in log.read_text()
