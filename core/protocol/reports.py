"""What an agent tells its managers unasked: heartbeats and kernel events.

A heartbeat goes out when a link comes up and every ``agent.heartbeat_interval``
seconds; the manager records the agent from it (``crucible.cluster.directory``) and
reconciles its kernels against it (``crucible.sessions.reconciliation``): stats of the
live ones stored, kernels nobody wants removed, kernels the agent no longer has ended.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from crucible.protocol.stats import KernelStats


@attrs.frozen
class ImageEntry:
    """One tag of a kernel image the agent has (one entry per tag)."""

    ref: str
    id: str
    labels: dict[str, str]


@attrs.frozen
class DeviceReport:
    """One accelerator device of the agent now (`crucible.hookspecs.accelerator`)."""

    #: The plugin that has it (``cuda``, ``mock``) and its id there.
    plugin: str
    device_id: str
    mem_total_bytes: int
    #: None where the device cannot tell.
    mem_used_bytes: int | None
    utilization_pct: float | None


@attrs.frozen
class PoolReport:
    """The agent's warm pool (`crucible.agent.pool`): kernels started ahead of time."""

    #: Ready kernels per image reference.
    ready: dict[str, int]
    #: Kernels being started for it now.
    starting: int
    #: Memory it holds, each kernel counted at its memory limit, bytes.
    memory_bytes: int
    #: Creates that took a pooled kernel, and creates that found none (or none that
    #: fitted) for an image it keeps, since the agent started.
    claims: int
    misses: int


@attrs.frozen
class AgentInfo:
    id: str
    #: The protocol version the agent speaks (`crucible.protocol.version.VERSION`).
    version: int
    #: Resource slots the agent offers in all: ``cpu`` (cores), ``mem`` (bytes), and
    #: those of its accelerator plugins (``cuda.device``, ``cuda.shares``...).
    capacity: dict[str, float]
    images: tuple[ImageEntry, ...]
    #: Its accelerator devices' latest figures (refreshed with the kernels' stats).
    devices: tuple[DeviceReport, ...] = ()
    #: Its warm pool; None from an agent that keeps none.
    pool: PoolReport | None = None


@attrs.frozen
class KernelReport:
    kernel_id: str
    #: The latest sample; None until the first one is taken.
    stats: KernelStats | None
    #: The latest figures of the accelerator devices it holds (a shared device whole).
    devices: tuple[DeviceReport, ...] = ()


@attrs.frozen
class Heartbeat:
    agent: AgentInfo
    kernels: tuple[KernelReport, ...]


@attrs.frozen
class KernelTerminated:
    """A kernel ended without being asked to (crash, out of memory, time limit, a
    failed restart, an agent restart that found it dead)."""

    name: ClassVar[str] = "kernel_terminated"

    kernel_id: str
    #: ``out-of-memory``, ``self-terminated``, ``exec-timeout``, ``restart-failed``,
    #: ``agent-restarted``, ``runner-unreachable``... (stored as the session's status).
    reason: str


#: Every event an agent may send (one for now; a union as more come).
AgentEvent = KernelTerminated
#: Every event class by its wire name.
EVENTS: dict[str, type[AgentEvent]] = {KernelTerminated.name: KernelTerminated}
