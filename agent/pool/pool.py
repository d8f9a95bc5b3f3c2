"""The warm pool: per image, kernels started ahead of time with their runners connected.

A pooled kernel is made exactly like a cold one (`ContainerPolicy.spec`: the same
hardening, seccomp profile, read-only root, scratch tmpfs, ipc directory and runner
peer check) with the limits a session gets by default, plus the `LABEL_POOL` label and
a ``/home/work`` that follows the host's mounts (`crucible.agent.pool.mounts`). Its
runner dials in and is checked as any runner is; then the kernel waits. A session
takes one (`claim`) when its request fits: the same image, limits ``docker update``
applies (CPU quota, memory), vfolders mounted through propagation, its environment
sent to the runner; the claim is recorded (`crucible.agent.pool.claims`), the
container renamed as a cold one is named, and the pool refills in the background.
Anything that goes wrong on the way discards that kernel and the caller takes the
cold path. A pooled kernel serves one session at most: it leaves the pool when claimed
and is removed with its session.

The pool holds at most ``pool.max_memory_bytes`` (each kernel counted at its memory
limit), adds a kernel only while the host's available memory stays above
``pool.min_host_available_bytes`` with that limit taken off, and removes pooled kernels
while it is below: it never pushes the host towards the OOM killer.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from crucible.agent import sandbox
from crucible.agent.containers import ContainerPolicy
from crucible.agent.docker.driver import DockerDriver
from crucible.agent.docker.errors import DockerError
from crucible.agent.kernel.info import KernelInfo
from crucible.agent.kernel.runner_link import (
    AcceptedRunner,
    RunnerConnection,
    RunnerGone,
    RunnerListener,
)
from crucible.agent.pool import mounts
from crucible.agent.pool.claims import ClaimRecords
from crucible.agent.pool.memory import AvailableMemory, host_available_bytes
from crucible.config import Config
from crucible.errors import ImageNotFound
from crucible.kernels.catalog import resolve_lang
from crucible.kernels.contract import CONTAINER_NAME_PREFIX, LABEL_LANG
from crucible.protocol.reports import ImageEntry, PoolReport

log = logging.getLogger(__name__)

#: Kernel ids of pool slots (never a session's: those are UUIDs).
SLOT_PREFIX = "pool-"


@attrs.define(eq=False)
class PooledKernel:
    """A ready kernel of the pool: its slot (kernel id ``pool-…``, scratch directory),
    its container and its runner, connected and idle."""

    info: KernelInfo
    container_id: str
    runner: RunnerConnection
    hello: dict[str, Any]
    #: The image it runs (its id, and its labels), as it was when the kernel started.
    image_id: str
    image_labels: dict[str, str]
    #: The watch on the idle runner (`WarmPool._watch`), and its end.
    watch: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    unwatched: trio.Event = attrs.field(factory=trio.Event)
    #: The runner spoke or went away while idle: the kernel serves nobody.
    broken: bool = False


@attrs.frozen
class Claimed:
    """A claimed kernel, for the lifecycle to supervise as the session's."""

    info: KernelInfo
    container_id: str
    runner: AcceptedRunner


class WarmPool:
    """The pooled kernels of one agent; `run` keeps it filled, `claim` takes one."""

    def __init__(
        self,
        config: Config,
        driver: DockerDriver,
        containers: ContainerPolicy,
        *,
        kernels_root: Path,
        images: Callable[[], Sequence[ImageEntry]],
        claims: ClaimRecords,
        available_memory: AvailableMemory = host_available_bytes,
    ) -> None:
        self._config = config.pool
        self._agent = config.agent
        self._driver = driver
        self._containers = containers
        self._kernels_root = kernels_root
        self._images = images
        self._available = available_memory
        #: Pooled kernels start with what a session gets by default, so the usual claim
        #: changes no limit at all.
        self.kernel_cpu = float(config.sessions.default_cpu_cores)
        self.kernel_memory = int(config.sessions.default_memory_bytes)
        self.claims = claims
        self._stage_root = kernels_root.parent / "pool-stage"
        self.ready: dict[str, list[PooledKernel]] = {}
        self._starting: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        self._limiter = trio.CapacityLimiter(self._config.refill_concurrency)
        self._wake = trio.Event()
        #: Set when no kernel is starting any more (the first fill is over).
        self._settled = trio.Event()
        self._claimed = 0
        self._missed = 0
        self._nursery: trio.Nursery | None = None

    # -- what it holds --------------------------------------------------------------------

    @property
    def size(self) -> int:
        return sum(len(kernels) for kernels in self.ready.values())

    @property
    def memory_bytes(self) -> int:
        """Memory the pool holds (ready and starting kernels, at their limit)."""
        return (self.size + sum(self._starting.values())) * self.kernel_memory

    def status(self) -> PoolReport:
        return PoolReport(
            ready={image: len(kernels) for image, kernels in self.ready.items() if kernels},
            starting=sum(self._starting.values()),
            memory_bytes=self.memory_bytes,
            claims=self._claimed,
            misses=self._missed,
        )

    def targets(self) -> dict[str, int]:
        """How many kernels to keep ready per image reference, from ``pool.sizes``."""
        entries = [(entry.ref, entry.labels) for entry in self._images()]
        wanted: dict[str, int] = {}
        for name, size in self._config.sizes.items():
            if size <= 0:
                continue
            try:
                ref = resolve_lang(name, entries)
            except ImageNotFound:
                continue  # not built (yet): nothing to pool
            wanted[ref] = wanted.get(ref, 0) + size
        return wanted

    # -- keeping it filled ----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Fill the pool and keep it filled, shrink it under memory pressure; on
        cancellation (agent shutdown) its kernels are removed: nobody claimed them."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                # Staging mounts a crashed agent left behind (never removed recursively).
                await trio.to_thread.run_sync(mounts.sweep_stages, self._stage_root)
                await self._check_logged()
                with trio.move_on_after(self._config.start_timeout):
                    if self.status().starting:
                        await self._settled.wait()
                task_status.started()
                while True:
                    with trio.move_on_after(self._config.check_interval):
                        await self._wake.wait()
                    self._wake = trio.Event()
                    await self._check_logged()
        finally:
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + self._agent.docker_timeout
                await self.discard_all()

    async def _check_logged(self) -> None:
        # The pool is a convenience: whatever goes wrong with it must not take the
        # agent (and its sessions) down; the next look tries again.
        try:
            await self.check()
        except Exception:
            log.exception("warm pool: the look at the pool failed")

    async def check(self) -> None:
        """One look: shrink under memory pressure, else start what is missing."""
        available = await trio.to_thread.run_sync(self._available)
        floor = self._config.min_host_available_bytes
        if available < floor:
            await self._shrink(available, floor)
            return
        targets = self.targets()
        for image in [image for image in self.ready if image not in targets]:
            # Dropped from the configuration (or the image is gone): not needed.
            for kernel in self.ready.pop(image):
                await self._discard(kernel)
        current = {entry.ref: entry.id for entry in self._images()}
        for kernels in list(self.ready.values()):
            for kernel in [k for k in kernels if current.get(k.info.image) != k.image_id]:
                # Its tag names a newer image now (rebuilt): a cold kernel would get that.
                await self._discard(kernel)
        assert self._nursery is not None
        now = trio.current_time()
        headroom = available - floor
        for image, target in targets.items():
            if self._retry_at.get(image, 0.0) > now:
                continue
            missing = target - len(self.ready.get(image, ())) - self._starting.get(image, 0)
            for _ in range(missing):
                if self.memory_bytes + self.kernel_memory > self._config.max_memory_bytes:
                    return
                if headroom < self.kernel_memory:
                    return
                headroom -= self.kernel_memory
                self._starting[image] = self._starting.get(image, 0) + 1
                self._nursery.start_soon(self._add, image)

    async def _shrink(self, available: int, floor: int) -> None:
        """Remove pooled kernels until what they hold covers the shortfall (or none is
        left)."""
        shortfall = floor - available
        log.warning(
            "host memory is low (%d MiB available, floor %d MiB): shrinking the warm pool",
            available >> 20,
            floor >> 20,
        )
        for image in list(self.ready):
            kernels = self.ready[image]
            while kernels and shortfall > 0:
                await self._discard(kernels.pop())
                shortfall -= self.kernel_memory

    async def _add(self, image: str) -> None:
        try:
            async with self._limiter:
                kernel = await self._start(image)
        except Exception as exc:  # any failure: this kernel is not made, the agent goes on
            log.warning("warm pool: could not start a kernel of %s: %r", image, exc)
            self._retry_at[image] = trio.current_time() + self._config.retry_delay
            return
        finally:
            self._starting[image] -= 1
            if not any(self._starting.values()):
                self._settled.set()
        self.ready.setdefault(image, []).append(kernel)
        assert self._nursery is not None
        self._nursery.start_soon(self._watch, kernel)

    async def _start(self, image: str) -> PooledKernel:
        image_id, labels = await self._driver.image_identity(image)
        slot = f"{SLOT_PREFIX}{secrets.token_hex(6)}"
        info = KernelInfo(
            kernel_id=slot,
            image=image,
            lang=labels.get(LABEL_LANG, ""),
            exec_timeout=self._containers.exec_timeout(labels),
            cpu=self.kernel_cpu,
            mem=self.kernel_memory,
            environ={},
            kernel_dir=self._kernels_root / slot,
        )
        scratch = await sandbox.prepare_scratch(
            info.kernel_dir, size_bytes=self._agent.scratch_size_bytes
        )
        container_id = ""
        try:
            await trio.to_thread.run_sync(mounts.share, scratch.work)
            listener = await RunnerListener.bind(
                info.ipc_dir, send_timeout=self._agent.runner_send_timeout
            )
            try:
                spec = self._containers.pooled_spec(info)
                container_id = await self._driver.create_and_start(spec)
                runner, hello = await listener.accept(
                    container_id, timeout=self._agent.runner_start_timeout
                )
            finally:
                listener.close()
        except BaseException:
            with trio.CancelScope(shield=True):
                if container_id:
                    await self._remove(container_id)
                await self._release(info)
            raise
        log.info("warm pool: %s ready (%s)", slot, image)
        return PooledKernel(info, container_id, runner, hello, image_id, labels)

    async def _watch(self, kernel: PooledKernel) -> None:
        """Wait on the idle runner: it says nothing until its session does, so a word
        from it (or its end: the container died) makes the kernel unusable."""
        with kernel.watch:
            try:
                message = await kernel.runner.receive()
                log.warning(
                    "warm pool: %s spoke while idle (%.80r)", kernel.info.kernel_id, message
                )
            except RunnerGone as exc:
                log.warning("warm pool: %s died while idle: %s", kernel.info.kernel_id, exc)
            kernel.broken = True
            if self._take(kernel):
                await self._discard(kernel)
            # else a claim took it meanwhile: the claim sees `broken` and discards it.
        kernel.unwatched.set()

    # -- claiming -------------------------------------------------------------------------

    def image_labels(self, image: str) -> dict[str, str] | None:
        """The labels of `image` when a kernel of it is ready (no engine call needed)."""
        kernels = self.ready.get(image)
        return dict(kernels[-1].image_labels) if kernels else None

    async def claim(self, info: KernelInfo) -> Claimed | None:
        """A ready kernel of `info.image` made into kernel `info`, or None (the caller
        takes the cold path): none is ready, or making it fit failed."""
        kernels = self.ready.get(info.image)
        if kernels is None:
            return None  # not an image the pool keeps
        if not kernels:
            self._missed += 1
            return None
        kernel = kernels.pop()
        self._wake.set()  # refill in the background
        kernel.watch.cancel()
        await kernel.unwatched.wait()
        claimed = attrs.evolve(info, kernel_dir=kernel.info.kernel_dir)
        try:
            if kernel.broken:
                raise RunnerGone("the pooled kernel's runner went away")
            await self._fit(kernel, claimed)
        except (DockerError, OSError, RunnerGone) as exc:
            log.warning(
                "warm pool: %s did not fit %s: %s", kernel.info.kernel_id, info.kernel_id, exc
            )
            await self._discard(kernel)
            self._missed += 1
            return None
        except BaseException:
            await self._discard(kernel)
            raise
        self._claimed += 1
        log.info("warm pool: %s claimed as %s", kernel.info.kernel_id, info.kernel_id)
        return Claimed(claimed, kernel.container_id, AcceptedRunner(kernel.runner, kernel.hello))

    async def _fit(self, kernel: PooledKernel, info: KernelInfo) -> None:
        """Make the pooled kernel the session's: its limits, vfolders, environment,
        claim record (and, in the background, its name)."""
        container_id = kernel.container_id
        if (info.cpu, info.mem) != (kernel.info.cpu, kernel.info.mem):
            await self._driver.update_limits(
                container_id,
                cpu_cores=info.cpu,
                memory_bytes=info.mem,
                swap_bytes=self._containers.hardening.swap_bytes,
            )
        if info.mounts:
            stage = self._stage_root / kernel.info.kernel_id
            work = sandbox.ScratchDir(info.kernel_dir).work
            await trio.to_thread.run_sync(mounts.attach, work, stage, info.mounts)
        await trio.to_thread.run_sync(self.claims.write, container_id, info)
        if info.environ:
            # Applied by the runner to every process it starts for the user from now on
            # (the interpreter it started ahead included), before any run: messages on
            # the socket are handled in order.
            await kernel.runner.send({"op": "environ", "environ": dict(info.environ)})
        # Named as a cold kernel is, off the create's path: the name is for operators
        # (``docker ps``); nothing finds a kernel by it.
        assert self._nursery is not None
        self._nursery.start_soon(self._rename, container_id, info.kernel_id)

    async def _rename(self, container_id: str, kernel_id: str) -> None:
        try:
            await self._driver.rename(container_id, f"{CONTAINER_NAME_PREFIX}{kernel_id}")
        except DockerError as exc:  # e.g. the session ended meanwhile
            log.info("warm pool: could not rename %s: %s", container_id[:12], exc)

    # -- removing -------------------------------------------------------------------------

    def _take(self, kernel: PooledKernel) -> bool:
        """Take `kernel` out of the ready ones; False if it was not there (claimed)."""
        kernels = self.ready.get(kernel.info.image, [])
        if kernel not in kernels:
            return False
        kernels.remove(kernel)
        self._wake.set()
        return True

    async def _discard(self, kernel: PooledKernel) -> None:
        """Remove a pooled kernel that will serve nobody."""
        self._take(kernel)
        kernel.watch.cancel()
        with trio.CancelScope(shield=True):
            await kernel.runner.aclose()
            await self._remove(kernel.container_id)
            await trio.to_thread.run_sync(self.claims.remove, kernel.container_id)
            await self._release(kernel.info)

    async def discard_all(self) -> None:
        for image in list(self.ready):
            for kernel in self.ready.pop(image):
                await self._discard(kernel)

    async def _remove(self, container_id: str) -> None:
        with contextlib.suppress(DockerError):
            await self._driver.remove(container_id)

    async def _release(self, info: KernelInfo) -> None:
        try:
            await sandbox.release_scratch(info.kernel_dir)
        except OSError:
            log.warning("could not release %s", info.kernel_dir, exc_info=True)
