"""Payloads far beyond one WebSocket frame cross the manager ↔ agent link, both ways,
with a real agent and real kernels: calls are sent straight through the session lifecycle,
so the API's own input limits do not hide what the link itself carries."""

from __future__ import annotations

import uuid

import psutil
import trio

from crucible import errors
from crucible.keypairs import KeypairRepository
from crucible.protocol.calls import ExecuteMode
from testlib.sessions import Cluster, create, execute, new_token, stream_text

MiB = 1024 * 1024


async def _run_to_end(cluster: Cluster, token: str, code: str) -> list[dict[str, object]]:
    """Run `code` through the session lifecycle (no HTTP edge), collecting every result."""
    registry = cluster.harness.server.components.sessions
    session = await registry.get_live(cluster.harness.user.access_key, token)
    run_id = uuid.uuid4().hex
    results = []
    mode: ExecuteMode = "query"
    with trio.fail_after(120):
        while True:
            result = await registry.execute(
                session, run_id=run_id, mode=mode, code=code, options={}
            )
            results.append(result.as_api())
            if result.status in ("finished", "exec-timeout"):
                return results
            mode, code = "continue", ""


async def test_a_call_of_megabytes_reaches_the_kernel(cluster: Cluster) -> None:
    token = new_token()
    assert (await create(cluster.client, token)).status_code == 201
    # 1.2 MB of code: over the agent's old 1 MiB WebSocket limit.
    code = "x = '" + "é" * 600_000 + "'\nprint(len(x), len(x.encode()))\n"
    results = await _run_to_end(cluster, token, code)
    assert stream_text(results) == "600000 1200000\n"
    assert cluster.agent.id in cluster.harness.server.components.agents.links


async def test_a_create_with_megabytes_of_environment_is_carried(cluster: Cluster) -> None:
    registry = cluster.harness.server.components.sessions
    keypair = await KeypairRepository(cluster.harness.db).get(cluster.harness.user.access_key)
    assert keypair is not None
    environ = {f"VAR_{i}": "v" * 1000 for i in range(2000)}  # ~2 MB
    try:
        session, created = await registry.create(
            keypair,
            new_token(),
            "python",
            tag=None,
            environ=environ,
            mounts=(),
            creation_config={"environ": environ},
        )
    except errors.KernelCreationFailed as exc:
        # Docker or the kernel may refuse an environment this large; the link carried
        # it, and the agent answered (an unreachable agent is a different failure).
        assert "unreachable" not in str(exc).lower(), exc
    else:
        assert created and session.status == "RUNNING"
    assert cluster.agent.id in cluster.harness.server.components.agents.links
    token = new_token()
    assert (await create(cluster.client, token)).status_code == 201
    assert stream_text(await execute(cluster.client, token, "print('next')")) == "next\n"


async def test_output_of_many_megabytes_is_capped_in_bytes_and_bounded(cluster: Cluster) -> None:
    token = new_token()
    assert (await create(cluster.client, token)).status_code == 201
    this_process = psutil.Process()  # the manager and the agent both live here
    rss_before = this_process.memory_info().rss
    code = (
        "import sys\n"
        "class HTML:\n"
        "    def __init__(self, data): self.data = data\n"
        "    def _repr_html_(self): return self.data\n"
        "for i in range(250):\n"
        "    display(HTML(f'<p>{i}</p>' + 'x' * (1024 * 1024)))\n"
        "print('😀' * 600000)\n"
        "print('😀' * 600000, file=sys.stderr)\n"
    )
    results = await execute(cluster.client, token, code)
    html = [data for r in results for kind, data in r["console"] if kind == "html"]
    stdout, stderr = stream_text(results), stream_text(results, "stderr")
    # At most 4 MiB of items per result, 512 KiB of each stream, and notes saying so.
    assert 0 < len(html) <= 4 * len(results)
    assert "html/media/log items beyond" in stderr
    for result in results:
        for stream in ("stdout", "stderr"):
            text = "".join(d for k, d in result["console"] if k == stream)
            body = text.split("\n[output")[0]
            assert len(body.encode()) <= 524_288
    assert "stdout exceeded 524288 bytes" in stdout and "stderr exceeded 524288 bytes" in stderr
    assert this_process.memory_info().rss < rss_before + 150 * MiB
    assert cluster.agent.output.used == 0  # all collected: nothing is held any more
    assert stream_text(await execute(cluster.client, token, "print('after')")) == "after\n"


async def test_output_nobody_collects_is_released_with_its_session(cluster: Cluster) -> None:
    token = new_token()
    assert (await create(cluster.client, token)).status_code == 201
    code = "import time\ntime.sleep(1.5)\nprint('u' * 300000, flush=True)\ntime.sleep(60)\n"
    first = await cluster.client.post(
        f"/kernel/{token}", json={"mode": "query", "code": code, "runId": None}
    )
    assert first.json()["result"]["status"] == "continued"
    with trio.fail_after(30):
        while cluster.agent.output.used < 300_000:  # printed, and nobody collects it
            await trio.sleep(0.1)
    assert (await cluster.client.request("DELETE", f"/kernel/{token}")).status_code == 200
    with trio.fail_after(30):
        while cluster.agent.output.used:
            await trio.sleep(0.1)
