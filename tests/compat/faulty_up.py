"""`crucible up` whose agent and manager fail on request, to show each is restarted.

Run as ``python faulty_up.py up ...`` (the arguments of `crucible`). When the file
``<state-dir>/fail-agent`` appears, the first agent raises; when ``fail-manager``
appears, the manager raises once. The supervisors of `crucible up` must log each and
start it again while the rest of the process carries on.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import trio

import crucible.agent.daemon as agent_daemon
from crucible.cli import main
from crucible.config import Config
from crucible.manager.server import ManagerServer

real_run_agent = agent_daemon.run_agent
real_sweep = ManagerServer._sweep_rate_limits
agent_failed = False


class InjectedFailure(RuntimeError):
    """The fault this wrapper injects."""


async def _fail_when(path: Path, message: str) -> None:
    trigger = trio.Path(path)
    while not await trigger.exists():
        await trio.sleep(0.1)
    await trigger.unlink()
    raise InjectedFailure(message)


async def failing_run_agent(
    config: Config, manager_urls: list[str], secret: str, *, task_status: Any
) -> None:
    global agent_failed
    if agent_failed:
        await real_run_agent(config, manager_urls, secret, task_status=task_status)
        return
    async with trio.open_nursery() as nursery:
        agent = await nursery.start(real_run_agent, config, manager_urls, secret)
        task_status.started(agent)
        await _fail_when(config.state_path / "fail-agent", "the agent failed on purpose")
        agent_failed = True


async def failing_sweep(self: ManagerServer) -> None:
    # A background duty of the manager: its failure ends `ManagerServer.run`.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(real_sweep, self)
        await _fail_when(self.config.state_path / "fail-manager", "the manager failed on purpose")


agent_daemon.run_agent = failing_run_agent  # type: ignore[assignment]
ManagerServer._sweep_rate_limits = failing_sweep  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
