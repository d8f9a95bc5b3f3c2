"""The agent's runner socket accepts the kernel's runner and nobody else (issue 9,
finding 1): real containers dial a real `RunnerListener`, each as a different impostor.

The socket's directory is the scratch fixture's ipc directory, mounted read-only into
every container of a test, so containers that should never reach it here can: that is
the worst case the peer check must survive on its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
from kernel_harness import Kernels

from crucible.agent.kernel.runner_link import PROTOCOL, SOCKET_NAME, RunnerListener

#: Dials the agent's socket from the process `WHO` names and says hello; then waits.
DIALER = r"""
import json, os, socket, struct, time
WHO = {who!r}
def dial(label):
    for _ in range(200):
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect("/opt/crucible/ipc/{name}")
            body = json.dumps({{"op": "hello", "protocol": {protocol}, "who": label}}).encode()
            s.sendall(struct.pack(">I", len(body)) + body)
            return s
        except OSError:
            time.sleep(0.05)
if WHO == "child":
    if os.fork() == 0:
        kept = dial("child")
        time.sleep(60)
        os._exit(0)
    time.sleep(1.5)  # the child dials first
kept = dial("pid1")
print("dialled", flush=True)
time.sleep(60)
"""


def _dialer(who: str) -> str:
    return DIALER.format(who=who, name=SOCKET_NAME, protocol=PROTOCOL)


@pytest.fixture
async def listener(kernels: Kernels) -> AsyncIterator[RunnerListener]:
    opened = await RunnerListener.bind(kernels.scratch.ipc, send_timeout=30.0)
    try:
        yield opened
    finally:
        opened.close()


async def _accept_from(listener: RunnerListener, container_id: str, timeout: float) -> str:
    conn, hello = await listener.accept(container_id, timeout=timeout)
    await conn.aclose()
    return str(hello["who"])


async def test_the_containers_pid_1_is_accepted(kernels: Kernels, listener: RunnerListener) -> None:
    container = await kernels.start(_dialer("pid1"))
    assert await _accept_from(listener, container, 20) == "pid1"


async def test_other_processes_of_the_same_container_are_refused(
    kernels: Kernels, listener: RunnerListener
) -> None:
    # Same uid, same cgroup, same socket: only being pid 1 tells the runner apart.
    container = await kernels.start(_dialer("child"))
    assert await _accept_from(listener, container, 20) == "pid1"


@pytest.mark.parametrize("impostor", ["pid 1 of another container", "a process of another uid"])
async def test_impostors_are_refused(
    kernels: Kernels, listener: RunnerListener, impostor: str
) -> None:
    if impostor == "a process of another uid":
        dialer = expected = await kernels.start(_dialer("pid1"), user="1001:1001")
    else:
        dialer = await kernels.start(_dialer("pid1"))
        expected = await kernels.start("import time; time.sleep(60)")
    with pytest.raises(trio.TooSlowError):
        await _accept_from(listener, expected, 4)
    # It did connect (and say hello): it was refused, not absent.
    assert "dialled" in await kernels.driver.logs(dialer)


async def test_the_socket_cannot_be_replaced_from_inside(
    kernels: Kernels, listener: RunnerListener
) -> None:
    out = await kernels.run(
        "import os\n"
        "for op in (lambda: os.symlink('/x', '/opt/crucible/ipc/agent.sock.new'),\n"
        "           lambda: os.rename('/opt/crucible/ipc/agent.sock', '/tmp/s'),\n"
        "           lambda: os.unlink('/opt/crucible/ipc/agent.sock')):\n"
        "    try:\n"
        "        op(); print('changed')\n"
        "    except OSError as exc:\n"
        "        print('refused', exc.errno)\n"
    )
    words = out.logs.split()
    assert words[::2] == ["refused"] * 3, out.logs
    # EROFS; a rename out of the mount may fail as EXDEV first.
    assert set(words[1::2]) <= {"30", "18"}, out.logs
    assert (kernels.scratch.ipc / SOCKET_NAME).is_socket()
