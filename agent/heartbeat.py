"""What the agent reports every ``agent.heartbeat_interval``: itself, its images, its kernels.

The heartbeat (`crucible.protocol.reports.Heartbeat`) only reads what `Heartbeats`
collected before: the images and every kernel's stats are refreshed in the background,
all Docker calls at once, because a heartbeat that waited on Docker for each of many
kernels would arrive late, and a late enough one gets the agent declared lost with all
its sessions.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping

import attrs
import trio

from crucible.agent import sandbox
from crucible.agent.accelerators import Accelerators
from crucible.agent.docker.driver import DockerDriver
from crucible.agent.docker.errors import DockerError
from crucible.agent.kernel.supervisor import KernelSupervisor
from crucible.config import Config
from crucible.hookspecs.accelerator import Allocation, DeviceStats, kernel_device_stats
from crucible.kernels.contract import LABEL_LANG
from crucible.kernels.service_ports import ServicePortError, image_service_ports
from crucible.protocol.reports import (
    AgentInfo,
    DeviceReport,
    Heartbeat,
    ImageEntry,
    KernelReport,
    PoolReport,
)
from crucible.protocol.stats import KernelStats
from crucible.protocol.version import VERSION

log = logging.getLogger(__name__)


def detect_capacity(config: Config) -> dict[str, float]:
    """The slots the agent offers: CPU cores (overcommitted) and memory bytes."""
    cpu = (config.agent.cpu_cores or os.cpu_count() or 1) * config.agent.cpu_overcommit
    mem = config.agent.memory_bytes or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cpu": float(cpu), "mem": float(mem)}


async def kernel_stats(driver: DockerDriver, supervisor: KernelSupervisor) -> KernelStats:
    """A kernel's stats now: Docker's sample, and its scratch usage measured here."""
    stats = await driver.stats(supervisor.container_id)
    scratch = sandbox.ScratchDir(supervisor.info.kernel_dir)
    used = await sandbox.scratch_usage_bytes(scratch)
    previous = supervisor.last_stats or KernelStats()
    return attrs.evolve(
        stats,
        io_cur_scratch_size=used,
        io_max_scratch_size=max(used, previous.io_max_scratch_size),
    )


@attrs.define(eq=False)
class Heartbeats:
    """The agent's heartbeat, and the images and kernel stats it carries, kept fresh
    (every `interval` seconds)."""

    _driver: DockerDriver
    _kernels: Mapping[str, KernelSupervisor]
    agent_id: str = attrs.field(kw_only=True)
    capacity: dict[str, float] = attrs.field(kw_only=True)
    _interval: float = attrs.field(kw_only=True)
    _accelerators: Accelerators = attrs.field(kw_only=True, factory=lambda: Accelerators([]))
    #: What the warm pool holds now (`crucible.agent.pool.pool.WarmPool.status`).
    _pool: Callable[[], PoolReport | None] = attrs.field(default=lambda: None, kw_only=True)
    images: tuple[ImageEntry, ...] = attrs.field(default=(), init=False)
    #: The accelerator devices' latest figures, by plugin.
    device_stats: dict[str, list[DeviceStats]] = attrs.field(factory=dict, init=False)

    def heartbeat(self) -> Heartbeat:
        return Heartbeat(
            agent=AgentInfo(
                id=self.agent_id,
                version=VERSION,
                capacity=dict(self.capacity),
                images=self.images,
                devices=tuple(
                    _report(plugin, s) for plugin, stats in self.device_stats.items() for s in stats
                ),
                pool=self._pool(),
            ),
            kernels=tuple(
                KernelReport(kernel_id, sup.last_stats, self._held_devices(sup.info.allocation))
                for kernel_id, sup in list(self._kernels.items())
            ),
        )

    async def refresh_images(self) -> tuple[ImageEntry, ...]:
        images = await self._driver.list_images(LABEL_LANG)
        self.images = tuple(
            ImageEntry(ref=tag, id=image.id, labels=dict(image.labels))
            for image in images
            if _offerable(image.tags, image.labels)
            for tag in image.tags
        )
        return self.images

    def _held_devices(self, allocation: Mapping[str, Allocation]) -> tuple[DeviceReport, ...]:
        return tuple(
            _report(plugin, s)
            for plugin, part in allocation.items()
            for s in kernel_device_stats(part, self.device_stats.get(plugin, []))
        )

    async def refresh_devices(self) -> None:
        self.device_stats = await self._accelerators.device_stats()

    async def collect_stats(self) -> None:
        """Refresh every kernel's stats, the image list and the accelerator devices'
        figures, all calls at once."""

        async def refresh(supervisor: KernelSupervisor) -> None:
            with contextlib.suppress(DockerError):
                supervisor.last_stats = await kernel_stats(self._driver, supervisor)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.refresh_images)
            nursery.start_soon(self.refresh_devices)
            for supervisor in list(self._kernels.values()):
                nursery.start_soon(refresh, supervisor)

    async def collect_forever(self) -> None:
        while True:
            await trio.sleep(self._interval)
            try:
                await self.collect_stats()
            except* DockerError:
                # The refreshes run in a nursery: Docker's failures come as a group.
                log.warning("could not refresh kernel statistics", exc_info=True)


def _offerable(tags: tuple[str, ...], labels: Mapping[str, str]) -> bool:
    """Whether an image may be offered: one whose service-port declaration (spec 9) is
    bad is not (a session of it would offer apps that cannot be reached)."""
    try:
        image_service_ports(labels)
    except ServicePortError as exc:
        log.warning("not offering image %s: %s", ", ".join(tags) or "(untagged)", exc)
        return False
    return True


def _report(plugin: str, stats: DeviceStats) -> DeviceReport:
    return DeviceReport(
        plugin, stats.device_id, stats.mem_total_bytes, stats.mem_used_bytes, stats.utilization_pct
    )
