"""Kernels made, restarted, recovered and removed, and their deaths reported.

Kernel state is recoverable from container labels alone: a restarted agent finds its
containers, listens again in their ipc directories until their runners dial back, and
supervises them again; whatever is dead is removed and reported (``agent-restarted``).
Each kernel's supervisor runs in this room's nursery; a kernel that ends on its own
(crash, OOM, time limit) is removed and reported as a `KernelTerminated` event.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import trio

from crucible.agent import sandbox
from crucible.agent.accelerators import Accelerators, AllocationRefused
from crucible.agent.calls import AgentCallError, live_kernel
from crucible.agent.containers import ContainerPolicy, vfolder_mounts
from crucible.agent.docker.driver import DockerDriver
from crucible.agent.docker.errors import DockerError
from crucible.agent.docker.specs import ContainerSummary
from crucible.agent.execution.limits import ExecLimits, FairSlots
from crucible.agent.execution.output import OutputLedger
from crucible.agent.heartbeat import kernel_stats
from crucible.agent.kernel.info import KernelInfo, info_from_label
from crucible.agent.kernel.runner_link import RunnerListener, RunnerSource
from crucible.agent.kernel.supervisor import KernelSupervisor
from crucible.agent.pool.claims import ClaimRecords
from crucible.agent.pool.pool import WarmPool
from crucible.config import AgentConfig, StreamsConfig
from crucible.kernels.contract import (
    LABEL_AGENT_ID,
    LABEL_KERNEL_ID,
    LABEL_KERNEL_INFO,
    LABEL_LANG,
    LABEL_POOL,
)
from crucible.kernels.service_ports import ServicePort, ServicePortError, image_service_ports
from crucible.protocol.calls import (
    CallTable,
    CreateKernel,
    DestroyKernel,
    KernelCreated,
    KernelDestroyed,
    KernelRestarted,
    RestartKernel,
)
from crucible.protocol.failures import ErrorKind
from crucible.protocol.reports import AgentEvent, KernelTerminated
from crucible.protocol.stats import KernelStats

log = logging.getLogger(__name__)


@attrs.frozen
class RunLimits:
    """What every kernel's runs share: the output ledger, the limits, the slots."""

    output: OutputLedger
    limits: ExecLimits
    slots: FairSlots
    #: The bounds of the kernels' terminals and tunnels.
    streams: StreamsConfig = attrs.Factory(StreamsConfig)


@attrs.define(eq=False)
class KernelLifecycle:
    """The agent's kernels from creation to removal, in the table `kernels` (their
    scratch directories under `kernels_root`); `emit` tells the managers of an end."""

    _config: AgentConfig
    _driver: DockerDriver
    _containers: ContainerPolicy
    _runs: RunLimits
    kernels: dict[str, KernelSupervisor] = attrs.field(kw_only=True)
    kernels_root: Path = attrs.field(kw_only=True)
    _emit: Callable[[AgentEvent], Awaitable[None]] = attrs.field(kw_only=True)
    #: The devices kernels hold: taken at create, given back when a kernel is removed.
    _accelerators: Accelerators = attrs.field(kw_only=True, factory=lambda: Accelerators([]))
    #: Who a claimed pooled container serves (its labels are the pool slot's).
    _claims: ClaimRecords = attrs.field(kw_only=True)
    #: Kernels started ahead of time; None: every kernel takes the cold path.
    _pool: WarmPool | None = attrs.field(default=None, kw_only=True)
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)

    def add_to(self, table: CallTable) -> None:
        table.add(CreateKernel, self.create_kernel)
        table.add(DestroyKernel, self.destroy_kernel)
        table.add(RestartKernel, self.restart_kernel)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Recover kernels, then supervise them until cancelled (containers stay up)."""
        self.kernels_root.mkdir(parents=True, exist_ok=True)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._recover()
            task_status.started()
            await trio.sleep_forever()

    # -- recovery -------------------------------------------------------------------------

    async def _recover(self) -> None:
        """Supervise every running container of ours again, all at once (each waits up
        to ``runner_recover_timeout`` for its runner to dial back); remove the rest."""
        containers = await self._driver.list_containers({LABEL_AGENT_ID: self._containers.agent_id})
        async with trio.open_nursery() as nursery:
            for container in containers:
                nursery.start_soon(self._recover_one, container)
        # Claim records of containers that are gone.
        live = {container.id for container in containers}
        for container_id in await trio.to_thread.run_sync(self._claims.container_ids):
            if container_id not in live:
                await trio.to_thread.run_sync(self._claims.remove, container_id)
        # Scratch directories nobody owns any more (their containers are gone).
        owned = {s.info.kernel_dir for s in self.kernels.values()}
        for kernel_dir in list(self.kernels_root.iterdir()):
            if kernel_dir not in owned:
                # One that will not go (a host process still in it) must not stop the
                # recovery of the rest: it is tried again at the next start.
                await _release_kernel_dir(kernel_dir)

    async def _recover_one(self, container: ContainerSummary) -> None:
        labels = container.labels
        kernel_id = labels.get(LABEL_KERNEL_ID, "")
        if LABEL_POOL in labels:
            # A pooled kernel: its session is in the claim record, if it was claimed.
            claimed = await trio.to_thread.run_sync(self._claims.read, container.id)
            if claimed is None:
                log.info("discarding unclaimed pooled container %s", container.id[:12])
                await self._remove_container(container.id)
                return  # its scratch directory goes with the unowned ones
            info, kernel_id = claimed, claimed.kernel_id
        else:
            try:
                info = info_from_label(labels[LABEL_KERNEL_INFO])
            except (KeyError, ValueError, TypeError):
                log.warning("removing container %s with unreadable labels", container.id)
                await self._remove_container(container.id)
                return
        if info.kernel_dir.parent != self.kernels_root or info.kernel_dir.name in ("", ".", ".."):
            # Labelled with our id but kept elsewhere: not ours to touch.
            log.warning("ignoring container %s of another state directory", container.id[:12])
            return
        # Limits are re-applied from today's configuration, not only from the label.
        info = attrs.evolve(info, exec_timeout=self._containers.cap_exec_timeout(info.exec_timeout))
        if container.status == "running":
            # Its devices are still its own: nobody else may be given them.
            self._accelerators.restore(info.kernel_id, info.allocation)
            try:
                listener = await RunnerListener.bind(
                    info.ipc_dir, send_timeout=self._config.runner_send_timeout
                )
            except OSError as exc:
                log.warning("kernel %s: cannot listen for its runner: %s", kernel_id, exc)
            else:
                log.info("recovering kernel %s (container %s)", kernel_id, container.id[:12])
                # A runner that does not dial back in time ends like any kernel that
                # dies (removed and reported as runner-unreachable).
                await self._supervise(
                    info, container.id, listener, self._config.runner_recover_timeout
                )
                return
            self._accelerators.free(info.kernel_id)
        log.info("removing dead kernel container %s", container.id[:12])
        await self._remove_container(container.id)
        await _release_kernel_dir(info.kernel_dir)
        await self._emit(KernelTerminated(kernel_id, "agent-restarted"))

    # -- calls ----------------------------------------------------------------------------

    async def create_kernel(self, call: CreateKernel) -> KernelCreated:
        kernel_id = call.kernel_id
        if kernel_id in self.kernels:
            raise AgentCallError(f"kernel {kernel_id} already exists", ErrorKind.INVALID_INPUT)
        image = call.image
        # A pooled kernel of the image knows its labels: no engine call on the warm path.
        pooled_labels = self._pool.image_labels(image) if self._pool is not None else None
        labels = pooled_labels or await self._driver.image_labels(image)
        lang = labels.get(LABEL_LANG)
        if not lang:
            raise AgentCallError(f"{image} is not a Crucible kernel image", ErrorKind.INVALID_INPUT)
        try:
            service_ports = image_service_ports(labels)
        except ServicePortError as exc:
            message = f"{image} declares bad service ports: {exc}"
            raise AgentCallError(message, ErrorKind.INVALID_INPUT) from exc
        try:
            allocation = self._accelerators.allocate(kernel_id, call.accelerator_slots)
        except AllocationRefused as exc:
            raise AgentCallError(str(exc), ErrorKind.INSUFFICIENT_RESOURCES) from None
        try:
            container_id = await self._create(call, image, lang, labels, allocation, service_ports)
        except BaseException:
            # Nothing half-allocated: a kernel that did not come up holds no device.
            self._accelerators.free(kernel_id)
            raise
        return KernelCreated(container_id, service_ports=service_ports)

    async def _create(
        self,
        call: CreateKernel,
        image: str,
        lang: str,
        labels: dict[str, str],
        allocation: dict[str, dict[str, dict[str, float]]],
        service_ports: tuple[ServicePort, ...],
    ) -> str:
        kernel_id = call.kernel_id
        info = KernelInfo(
            kernel_id=kernel_id,
            image=image,
            lang=lang,
            exec_timeout=self._containers.exec_timeout(labels),
            cpu=call.cpu,
            mem=call.mem,
            environ=dict(call.environ),
            kernel_dir=self.kernels_root / kernel_id.replace("-", "")[:16],
            mounts=await trio.to_thread.run_sync(vfolder_mounts, call.mounts)
            if call.mounts
            else (),
            access_key=call.access_key,
            service_ports=service_ports,
            allocation=allocation,
        )
        # Devices go into a container's spec (device requests, environment) when it is
        # made: a kernel holding any takes the cold path.
        poolable = self._pool is not None and not any(allocation.values())
        claimed = await self._pool.claim(info) if poolable and self._pool is not None else None
        if claimed is not None:
            supervisor = await self._supervise(
                claimed.info,
                claimed.container_id,
                claimed.runner,
                self._config.runner_start_timeout,
            )
            if supervisor.terminated_reason is not None:
                raise AgentCallError(_start_failure("start", supervisor))
            return claimed.container_id
        await sandbox.prepare_scratch(info.kernel_dir, size_bytes=self._config.scratch_size_bytes)
        return await self._start(info, "start")

    async def restart_kernel(self, call: RestartKernel) -> KernelRestarted:
        old = live_kernel(self.kernels, call.kernel_id)
        info = old.info
        # Take it out of the table first, so its death is not reported as a crash.
        del self.kernels[info.kernel_id]
        old.mark_terminated("restarting")
        await self._remove_container(old.container_id)
        await trio.to_thread.run_sync(self._claims.remove, old.container_id)
        return KernelRestarted(await self._start(info, "restart"))

    async def destroy_kernel(self, call: DestroyKernel) -> KernelDestroyed:
        supervisor = self.kernels.pop(call.kernel_id, None)
        if supervisor is None:
            return KernelDestroyed(stats=None)
        supervisor.mark_terminated(call.reason or "user-requested")
        return KernelDestroyed(stats=await self._destroy_container(supervisor))

    # -- starting -------------------------------------------------------------------------

    async def _start(self, info: KernelInfo, action: str) -> str:
        """Start the kernel's container and supervise it until its runner answered;
        its container id. `action` (``start``, ``restart``) names it in errors."""
        try:
            container_id, listener = await self._start_container(info)
        except (DockerError, OSError) as exc:
            await _release_kernel_dir(info.kernel_dir)
            self._accelerators.free(info.kernel_id)
            if action == "restart":
                await self._emit(KernelTerminated(info.kernel_id, "restart-failed"))
            raise AgentCallError(f"could not {action} the container: {exc}") from exc
        supervisor = await self._supervise(
            info, container_id, listener, self._config.runner_start_timeout
        )
        if supervisor.terminated_reason is not None:
            raise AgentCallError(_start_failure(action, supervisor))
        return container_id

    async def _start_container(self, info: KernelInfo) -> tuple[str, RunnerListener]:
        """Listen for the runner first (it dials as soon as it starts), then start it."""
        listener = await RunnerListener.bind(
            info.ipc_dir, send_timeout=self._config.runner_send_timeout
        )
        try:
            container_id = await self._driver.create_and_start(self._containers.spec(info))
        except BaseException:
            listener.close()
            raise
        return container_id, listener

    async def _supervise(
        self, info: KernelInfo, container_id: str, listener: RunnerSource, timeout: float
    ) -> KernelSupervisor:
        assert self._nursery is not None
        supervisor = KernelSupervisor(
            info,
            container_id,
            on_terminated=self._kernel_died,
            output=self._runs.output.session(),
            listener=listener,
            connect_timeout=timeout,
            limits=self._runs.limits,
            slots=self._runs.slots,
            stream_config=self._runs.streams,
        )
        self.kernels[info.kernel_id] = supervisor
        await self._nursery.start(_run_kernel, supervisor)
        return supervisor

    # -- ending ---------------------------------------------------------------------------

    async def _kernel_died(self, supervisor: KernelSupervisor, reason: str) -> None:
        """The kernel ended on its own (crash, OOM, time limit): clean up and report."""
        kernel_id = supervisor.info.kernel_id
        if self.kernels.get(kernel_id) is not supervisor:
            return  # destroyed or restarted on purpose
        del self.kernels[kernel_id]
        try:
            state = await self._driver.inspect(supervisor.container_id)
            if state.oom_killed:
                reason = "out-of-memory"
        except DockerError:
            pass
        if not supervisor.connected.is_set():
            # It never came up: what the runner printed is the only clue; keep it for the
            # error the create (or restart) call returns.
            try:
                supervisor.startup_output = await self._driver.logs(
                    supervisor.container_id, tail_lines=20, max_bytes=4096
                )
            except DockerError:
                pass
        log.info("kernel %s ended: %s", kernel_id, reason)
        await self._destroy_container(supervisor)
        await self._emit(KernelTerminated(kernel_id, reason))

    async def _destroy_container(self, supervisor: KernelSupervisor) -> KernelStats | None:
        stats = supervisor.last_stats
        try:
            stats = await kernel_stats(self._driver, supervisor)
        except DockerError:
            pass
        await self._remove_container(supervisor.container_id)
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._claims.remove, supervisor.container_id)
        await _release_kernel_dir(supervisor.info.kernel_dir)
        # The container is gone: its devices are free for the next kernel.
        self._accelerators.free(supervisor.info.kernel_id)
        return stats

    async def _remove_container(self, container_id: str) -> None:
        with trio.CancelScope(shield=True):
            try:
                await self._driver.remove(container_id)
            except DockerError:
                log.warning("could not remove container %s", container_id, exc_info=True)


async def _release_kernel_dir(kernel_dir: Path) -> None:
    """Unmount and remove a kernel's directory; a failure is logged, never raised."""
    with trio.CancelScope(shield=True):
        try:
            await sandbox.release_scratch(kernel_dir)
        except OSError:
            log.warning("could not release %s", kernel_dir, exc_info=True)


async def _run_kernel(
    supervisor: KernelSupervisor, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    try:
        await supervisor.run(task_status=task_status)
    finally:
        # Nobody can collect this kernel's runs any more: their output stops counting.
        supervisor.output.close()


def _start_failure(action: str, supervisor: KernelSupervisor) -> str:
    message = f"the kernel did not {action}: {supervisor.terminated_reason}"
    output = supervisor.startup_output.strip()
    return f"{message}; its output: {output}" if output else message
