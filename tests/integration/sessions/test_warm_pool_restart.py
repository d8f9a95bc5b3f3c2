"""A restarted agent and its warm pool: claimed kernels recovered as their sessions,
unclaimed ones discarded (and replaced), nothing leaked. Real processes, kill -9."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import trio

from crucible.db.pool import Database
from crucible.kernels.contract import LABEL_POOL
from crucible.keypairs import KeypairRepository, NewKeypair
from testlib.processes import (
    crucible_process,
    free_port,
    open_client,
    wait_for_agent,
    write_cluster_config,
)
from testlib.sessions import create, execute, new_token, removing_containers, stream_text
from testlib.signing import Credentials

SECRET = "pool-restart-secret-0123456789abcdef"


async def _pool_containers(agent_id: str) -> list[str]:
    argv = ["docker", "ps", "-aq", "--no-trunc", "--filter", f"label=crucible.agent-id={agent_id}"]
    argv += ["--filter", f"label={LABEL_POOL}"]
    with trio.fail_after(30):
        done = await trio.run_process(argv, capture_stdout=True)
    return done.stdout.decode().split()


async def _until_logged(log: Path, text: str, count: int = 1) -> None:
    with trio.fail_after(60):
        while (await trio.Path(log).read_text()).count(text) < count:
            await trio.sleep(0.1)


async def test_a_restarted_agent_recovers_claimed_and_discards_unclaimed_kernels(
    docker_ready: None, pg_dsn: str, db: Database, short_state_dir: Path
) -> None:
    agent_id = f"poolr-{short_state_dir.name}"
    port = free_port()
    config = write_cluster_config(
        short_state_dir,
        pg_dsn,
        port,
        agent_id,
        secret=SECRET,
        agent_extra="[pool]\nsizes = { python = 1 }\ncheck_interval = 0.2\n",
        log_level="INFO",
    )
    log = short_state_dir / "processes.log"
    claims = short_state_dir / "agent" / "claims"
    kp = await KeypairRepository(db).create(NewKeypair("pool@test"))
    async with removing_containers(agent_id):
        with crucible_process("manager", "--config", str(config), log=log):
            creds = Credentials(kp.access_key, kp.secret_key)
            async with open_client(f"http://127.0.0.1:{port}", creds) as client:
                with crucible_process("agent", "--config", str(config), log=log) as agent:
                    await wait_for_agent(db, agent_id, "ALIVE")
                    await _until_logged(log, "ready (crucible/kernel-python")
                    token = new_token()
                    response = await create(client, token, environ={"KEPT": "yes"})
                    assert response.status_code == 201, response.text
                    (claimed,) = [path.stem for path in await trio.Path(claims).iterdir()]
                    await execute(client, token, "x = 'survived'")
                    # The pool refills: an unclaimed kernel is there when the agent dies.
                    await _until_logged(log, "ready (crucible/kernel-python", 2)
                    unclaimed = set(await _pool_containers(agent_id)) - {claimed}
                    assert len(unclaimed) == 1
                    os.kill(agent.pid, signal.SIGKILL)
                    agent.wait(10)

                with crucible_process("agent", "--config", str(config), log=log):
                    with trio.fail_after(30):
                        while True:
                            response = await client.post(
                                f"/kernel/{token}", json={"mode": "query", "code": "1"}
                            )
                            if response.status_code == 200:
                                break
                            await trio.sleep(0.3)
                    code = "import os\nprint(x, os.environ['KEPT'])"
                    assert stream_text(await execute(client, token, code)) == "survived yes\n"
                    # The unclaimed kernel is gone, replaced by a new one.
                    with trio.fail_after(60):
                        while True:
                            pooled = set(await _pool_containers(agent_id))
                            if not pooled & unclaimed and len(pooled - {claimed}) == 1:
                                break
                            await trio.sleep(0.3)
                    assert (await client.request("DELETE", f"/kernel/{token}")).status_code == 200
                    assert not await trio.Path(claims / f"{claimed}.json").exists()
