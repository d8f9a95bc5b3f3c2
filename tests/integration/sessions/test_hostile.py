"""Hostile code, each in its own session: contained, reported, and harmless to others."""

from __future__ import annotations

from typing import Any

import psutil
import pytest
import trio

from testlib.sessions import Cluster, execute, start_session, stream_text, try_each

from .conftest import cold_and_pooled

#: Every test runs on a cold kernel and on one claimed from the warm pool: the
#: protections must hold the same for both (docs/security.md).
kernel_start, pooled_kernels_claimed = cold_and_pooled()

#: Short per-run limits keep the runaway cases quick.
HOSTILE_SETTINGS = {"agent": {"max_exec_seconds": 6, "pids_limit": 64}}


async def _assert_gone(cluster: Cluster, token: str) -> None:
    with trio.fail_after(15):
        while (await cluster.client.get(f"/kernel/{token}")).status_code != 404:
            await trio.sleep(0.2)


@pytest.mark.manager_config(HOSTILE_SETTINGS)
async def test_fork_bomb_is_contained(cluster: Cluster) -> None:
    bomb, bystander = await start_session(cluster.client), await start_session(cluster.client)
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    async with trio.open_nursery() as nursery:
        results: list[dict[str, Any]] = []

        async def run_bomb() -> None:
            results.extend(await execute(cluster.client, bomb, code))

        nursery.start_soon(run_bomb)
        await trio.sleep(2)
        # Meanwhile another tenant's session works normally.
        assert stream_text(await execute(cluster.client, bystander, "print('fine')")) == "fine\n"
    assert results[-1]["status"] == "exec-timeout"
    await _assert_gone(cluster, bomb)
    assert await cluster.status_info(bomb) == "exec-timeout"


@pytest.mark.manager_config(HOSTILE_SETTINGS)
async def test_memory_bomb_ends_the_session_as_out_of_memory(cluster: Cluster) -> None:
    bomb = await start_session(cluster.client, instanceMemory=0.25)
    bystander = await start_session(cluster.client)
    agent_rss = psutil.Process().memory_info().rss
    results = await execute(
        cluster.client,
        bomb,
        "blocks = []\nwhile True:\n    blocks.append(bytearray(32 * 1024 * 1024))",
    )
    assert results[-1]["status"] == "finished"
    await _assert_gone(cluster, bomb)
    assert await cluster.status_info(bomb) == "out-of-memory"
    assert stream_text(await execute(cluster.client, bystander, "print('fine')")) == "fine\n"
    # The manager and agent (this process) did not absorb the bomb.
    assert psutil.Process().memory_info().rss < agent_rss + 100 * 1024 * 1024


@pytest.mark.manager_config(HOSTILE_SETTINGS)
async def test_endless_loop_times_out(cluster: Cluster) -> None:
    token = await start_session(cluster.client)
    results = await execute(cluster.client, token, "while True: pass")
    assert results[-1]["status"] == "exec-timeout"
    await _assert_gone(cluster, token)


async def test_output_flood_is_truncated_and_bounded(cluster: Cluster) -> None:
    token = await start_session(cluster.client)
    rss_before = psutil.Process().memory_info().rss
    results = await execute(cluster.client, token, "print('x' * (50 * 1024 * 1024))")
    assert results[-1]["status"] == "finished"
    for result in results:
        stdout = "".join(item[1] for item in result["console"] if item[0] == "stdout")
        assert len(stdout) <= 524_288 + 200  # the cap plus the truncation note
    assert "truncated" in stream_text(results)
    assert psutil.Process().memory_info().rss < rss_before + 200 * 1024 * 1024
    assert stream_text(await execute(cluster.client, token, "print('after')")) == "after\n"


@pytest.mark.parametrize(
    ("setup", "targets", "attempt"),
    [
        pytest.param(
            "import socket",
            [("127.0.0.1", 9), ("1.1.1.1", 53)],
            "socket.create_connection(target, timeout=2)",
            id="no-network",
        ),
        pytest.param(
            "",
            ["/evil", "/usr/evil", "/etc/passwd"],
            "open(target, 'a').write('x')",
            id="read-only-system-paths",
        ),
    ],
)
async def test_user_code_is_refused(
    cluster: Cluster, setup: str, targets: list[object], attempt: str
) -> None:
    token = await start_session(cluster.client)
    out = stream_text(await execute(cluster.client, token, try_each(targets, attempt, setup=setup)))
    assert "allowed" not in out
    assert out.count("refused") == len(targets)


#: Prints what ptrace(PTRACE_TRACEME) returns, and its errno.
PTRACE = """
import ctypes, ctypes.util
libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
print(libc.ptrace(0, 0, 0, 0), ctypes.get_errno())
"""


async def test_ptrace_is_blocked(cluster: Cluster) -> None:
    token = await start_session(cluster.client)
    rc, errno = stream_text(await execute(cluster.client, token, PTRACE)).split()
    assert rc == "-1"
    assert errno == "1"  # EPERM


#: Writes 64 MiB into /home/work; says whether the disk was full (ENOSPC) first.
FILL_HOME = """
import errno
try:
    with open('/home/work/fill', 'wb') as f:
        for _ in range(64):
            f.write(b'x' * 1024 * 1024)
    print('filled')
except OSError as exc:
    print('full', exc.errno == errno.ENOSPC)
"""


@pytest.mark.manager_config({"agent": {"scratch_size_bytes": 16 * 1024 * 1024}})
async def test_filling_home_work_hits_its_limit(cluster: Cluster) -> None:
    token = await start_session(cluster.client)
    assert stream_text(await execute(cluster.client, token, FILL_HOME)) == "full True\n"
    assert (
        stream_text(await execute(cluster.client, token, "print('still here')")) == "still here\n"
    )
