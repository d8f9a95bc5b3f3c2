"""The agent: one host's kernels and the calls managers make on them, put together.

`Agent` builds its parts once and hands each what it uses: the kernels' lifecycle
(`crucible.agent.lifecycle`), the calls on live kernels (`crucible.agent.calls`), the
heartbeat and what it carries (`crucible.agent.heartbeat`), the session files
(`crucible.agent.files`) and the events for the managers (`crucible.agent.events`). The
managers' links (`crucible.agent.manager_link`) see it as a `LinkedAgent`.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import trio

from crucible.agent.accelerators import Accelerators
from crucible.agent.calls import KernelCalls
from crucible.agent.containers import ContainerPolicy, compile_runner
from crucible.agent.docker.driver import DockerDriver
from crucible.agent.events import EventSink, EventSinks
from crucible.agent.execution.limits import ExecLimits, FairSlots
from crucible.agent.execution.output import OutputLedger
from crucible.agent.files.service import FileService
from crucible.agent.heartbeat import Heartbeats, detect_capacity
from crucible.agent.kernel.supervisor import KernelSupervisor
from crucible.agent.lifecycle import KernelLifecycle, RunLimits
from crucible.agent.pool.claims import ClaimRecords
from crucible.agent.pool.pool import WarmPool
from crucible.config import Config
from crucible.protocol.calls import CallTable
from crucible.protocol.reports import Heartbeat


def default_agent_id(state_dir: Path) -> str:
    """The host name plus a digest of the state directory.

    Agents find their containers by this id, so two agents on one Docker engine (two
    `crucible up` with different state directories) must never share it; the same state
    directory gives the same id, so a restarted agent still finds its kernels.
    """
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


class Agent:
    def __init__(
        self, config: Config, driver: DockerDriver, accelerators: Accelerators | None = None
    ) -> None:
        self.config = config
        self.driver = driver
        self.id = config.agent.id or default_agent_id(config.state_path)
        self.kernels_root = config.state_path / "agent" / "k"
        #: CPU and memory now; the accelerators' slots join once they are discovered.
        self.capacity = detect_capacity(config)
        #: The devices of ``agent.accelerators`` and who holds them.
        self.accelerators = accelerators or Accelerators([])
        #: The live kernels by id; the lifecycle keeps it, the others read it.
        self.kernels: dict[str, KernelSupervisor] = {}
        self._events = EventSinks()
        self.files = FileService(upload_idle_timeout=config.agent.upload_idle_timeout)
        self.exec_limits = ExecLimits.from_config(config.agent)
        #: Runs executing at once on this agent, shared fairly between access keys.
        self.run_slots = FairSlots(config.agent.concurrent_runs)
        #: What the agent holds of output nobody has collected yet, per session and in all.
        self.output = OutputLedger.from_config(config.agent)
        self.containers = ContainerPolicy(config.agent, self.id, self.accelerators)
        claims = ClaimRecords(self.kernels_root.parent / "claims")
        self.heartbeats = Heartbeats(
            driver,
            self.kernels,
            agent_id=self.id,
            capacity=self.capacity,
            interval=config.agent.heartbeat_interval,
            accelerators=self.accelerators,
            pool=lambda: self.pool.status() if config.pool.sizes else None,
        )
        #: Kernels started ahead of time (`crucible.agent.pool`); empty without
        #: ``[pool] sizes``.
        self.pool = WarmPool(
            config,
            driver,
            self.containers,
            kernels_root=self.kernels_root,
            images=lambda: self.heartbeats.images,
            claims=claims,
        )
        self.lifecycle = KernelLifecycle(
            config.agent,
            driver,
            self.containers,
            RunLimits(self.output, self.exec_limits, self.run_slots, config.streams),
            kernels=self.kernels,
            kernels_root=self.kernels_root,
            emit=self._events.emit,
            accelerators=self.accelerators,
            claims=claims,
            pool=self.pool,
        )
        self._calls = CallTable()
        self.lifecycle.add_to(self._calls)
        KernelCalls(config.agent, driver, self.kernels, self.files).add_to(self._calls)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Find the accelerators' devices, recover kernels (and the devices they hold),
        then supervise them until cancelled (containers stay up)."""
        await trio.to_thread.run_sync(compile_runner)
        await self.accelerators.discover()
        self.capacity.update(self.accelerators.capacity())
        await self.heartbeats.refresh_devices()
        async with trio.open_nursery() as nursery:
            await self.heartbeats.refresh_images()
            await nursery.start(self.lifecycle.run)
            # After recovery: it discards the pooled kernels a previous agent left.
            await nursery.start(self.pool.run)
            nursery.start_soon(self.heartbeats.collect_forever)
            task_status.started()

    # -- what a manager link uses (`crucible.agent.manager_link.LinkedAgent`) -------------

    def heartbeat(self) -> Heartbeat:
        return self.heartbeats.heartbeat()

    def calls(self) -> CallTable:
        """The calls managers may make, by class."""
        return self._calls

    def add_event_sink(self, sink: EventSink) -> None:
        self._events.add(sink)

    def remove_event_sink(self, sink: EventSink) -> None:
        self._events.remove(sink)
