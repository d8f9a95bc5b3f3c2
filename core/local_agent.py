"""The local agent of ``crucible up`` in a process of its own.

One interpreter ran the manager and the agent, and under load it sat at 100% of one
core while the other idled: every execute crosses both. Here the agent is a child
process (the same program, run as ``<argv> up-agent``) that dials the manager like any
agent, so each side has an interpreter, and a core, to itself.

Who stops whom:

* the child is in a session of its own, so a terminal's Ctrl-C reaches only the parent,
  which first ends the sessions through the agent, then asks the child to stop by
  closing its stdin (`stop_timeout` later it is killed);
* the child stops when its stdin closes, so a parent killed with SIGKILL takes no agent
  along but leaves none behind either: its kernels stay, for the next start to recover;
* a child that exits or is killed after it started is a failure like any other:
  `crucible.supervision.supervise` starts a new one, which recovers the kernels.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Sequence

import trio

from crucible.errors import StartupError

log = logging.getLogger(__name__)

#: The line the child writes on its stdout once its agent has started.
READY = b"crucible-agent-ready\n"
_MAX_READY_LINE = 4096


class AgentProcessExited(RuntimeError):
    """The local agent's process ended while the manager still needed it."""


def agent_argv(program: str, options: Sequence[str], manager_urls: Sequence[str]) -> list[str]:
    """How to start the child: `program` (this process's own ``sys.argv[0]``, so that a
    wrapper around `crucible` wraps the agent too) with the configuration `options`."""
    if os.path.isfile(program):
        prefix = [sys.executable, program]
    else:
        prefix = [sys.executable, "-m", "crucible"]
    urls = [arg for url in manager_urls for arg in ("--manager-url", url)]
    return [*prefix, *options, "up-agent", *urls]


async def run_agent_process(
    argv: Sequence[str],
    *,
    start_timeout: float,
    stop_timeout: float,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the agent process `argv` until cancelled; raise when it ends on its own.

    `task_status` gets the child's pid once its agent has started; a child that does
    not get that far is a `StartupError` (its own messages are on the shared stderr).
    """
    process = await trio.lowlevel.open_process(
        list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        with trio.move_on_after(start_timeout):
            ready = await _read_line(process.stdout)
        if ready != READY:
            code = await _stop(process, stop_timeout)
            raise StartupError(f"the local agent did not start (its process ended with {code})")
        log.info("the local agent runs as process %d", process.pid)
        task_status.started(process.pid)
        code = await process.wait()
        raise AgentProcessExited(f"the agent process {process.pid} ended with status {code}")
    finally:
        with trio.CancelScope(shield=True):
            await _stop(process, stop_timeout)


async def _read_line(stream: trio.abc.ReceiveStream) -> bytes:
    line = b""
    while not line.endswith(b"\n") and len(line) < _MAX_READY_LINE:
        chunk = await stream.receive_some(1)
        if not chunk:
            break
        line += chunk
    return line


async def _stop(process: trio.Process, timeout: float) -> int:
    """Ask the child to stop (its stdin closes), kill it after `timeout`; its status."""
    assert process.stdin is not None and process.stdout is not None
    if process.returncode is None:
        await process.stdin.aclose()
        with trio.move_on_after(timeout):
            await process.wait()
        if process.returncode is None:
            log.warning("the agent process %d did not stop in %.0f s: killed", process.pid, timeout)
            process.kill()
    code = await process.wait()
    await process.stdout.aclose()
    return code
