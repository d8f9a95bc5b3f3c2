"""The agent: owns the kernels of one host and answers the managers' calls.

Kernel state is recoverable from container labels alone: a restarted agent finds its
containers, listens again in their ipc directories until their runners dial back, and
reports them; whatever the managers no longer want is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import trio

import crucible.agent
from crucible.agent import docker_driver, sandbox
from crucible.agent.exec_limits import ExecLimits, FairSlots
from crucible.agent.files import FileOpError, FileService
from crucible.agent.hostpaths import check_trusted_dir
from crucible.agent.kernel import KernelGone, KernelInfo, KernelSupervisor
from crucible.agent.run_queue import QueueFull
from crucible.agent.runner_link import SOCKET_NAME, RunnerListener
from crucible.agent.runs import OutputLedger
from crucible.config import Config
from crucible.kernels.contract import (
    BASE_ENVIRONMENT,
    CONTAINER_NAME_PREFIX,
    CONTAINER_USER,
    IPC_DIR,
    LABEL_AGENT_ID,
    LABEL_KERNEL_ID,
    LABEL_KERNEL_INFO,
    LABEL_LANG,
    LABEL_OWNER,
    LABEL_TIMEOUT,
    OWNER,
    RUNNER_DIR,
    WORK_DIR,
)
from crucible.protocol.calls import (
    CallTable,
    CancelRun,
    Complete,
    Completions,
    CreateKernel,
    DestroyKernel,
    Done,
    Execute,
    ExecutionResult,
    GetLogs,
    Interrupt,
    KernelCreated,
    KernelDestroyed,
    KernelList,
    KernelLogs,
    KernelRestarted,
    ListKernels,
    Mount,
    RestartKernel,
    RunCancelled,
)
from crucible.protocol.failures import ErrorKind
from crucible.protocol.file_calls import FILE_CALLS, FileCall
from crucible.protocol.reports import (
    AgentEvent,
    AgentInfo,
    Heartbeat,
    ImageEntry,
    KernelReport,
    KernelTerminated,
)
from crucible.protocol.stats import KernelStats
from crucible.protocol.version import VERSION

log = logging.getLogger(__name__)

#: The runner's code on the host, bind-mounted read-only into every kernel.
RUNNER_HOST_DIR = str(Path(crucible.agent.__file__).parent / "runner")

EventSink = Callable[[AgentEvent], Awaitable[None]]


class AgentCallError(Exception):
    """A call the agent refuses or cannot carry out; `kind` goes into the error reply."""

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.AGENT_FAILURE) -> None:
        super().__init__(message)
        self.kind = kind


def default_agent_id(state_dir: Path) -> str:
    """The host name plus a digest of the state directory.

    Agents find their containers by this id, so two agents on one Docker engine (two
    `crucible up` with different state directories) must never share it; the same state
    directory gives the same id, so a restarted agent still finds its kernels.
    """
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


def detect_capacity(config: Config) -> dict[str, float]:
    cpu = (config.agent.cpu_cores or os.cpu_count() or 1) * config.agent.cpu_overcommit
    mem = config.agent.memory_bytes or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cpu": float(cpu), "mem": float(mem)}


class Agent:
    def __init__(self, config: Config, driver: docker_driver.DockerDriver) -> None:
        self.config = config
        self.driver = driver
        self.id = config.agent.id or default_agent_id(config.state_path)
        self.kernels_root = config.state_path / "agent" / "k"
        self.capacity = detect_capacity(config)
        self.kernels: dict[str, KernelSupervisor] = {}
        self._event_sinks: list[EventSink] = []
        self._nursery: trio.Nursery | None = None
        self._images: tuple[ImageEntry, ...] = ()
        self.files = FileService(upload_idle_timeout=config.agent.upload_idle_timeout)
        self.exec_limits = ExecLimits.from_config(config.agent)
        #: Runs executing at once on this agent, shared fairly between access keys.
        self.run_slots = FairSlots(config.agent.concurrent_runs)
        self._hardening = attrs.evolve(
            sandbox.DEFAULT_HARDENING,
            log_options=(
                ("max-size", str(config.agent.container_log_max_bytes)),
                ("max-file", str(config.agent.container_log_files)),
            ),
        )
        #: What the agent holds of output nobody has collected yet, per session and in all.
        self.output = OutputLedger.from_config(config.agent)

    # -- wiring ---------------------------------------------------------------------------

    def add_event_sink(self, sink: EventSink) -> None:
        self._event_sinks.append(sink)

    def remove_event_sink(self, sink: EventSink) -> None:
        if sink in self._event_sinks:
            self._event_sinks.remove(sink)

    async def _emit(self, event: AgentEvent) -> None:
        for sink in list(self._event_sinks):
            try:
                await sink(event)
            except Exception:
                log.warning("could not deliver event %s", event.name, exc_info=True)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Recover kernels, then supervise them until cancelled (containers stay up)."""
        self.kernels_root.mkdir(parents=True, exist_ok=True)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self.refresh_images()
            await self._recover()
            nursery.start_soon(self._collect_stats_forever)
            task_status.started()
            await trio.sleep_forever()

    # -- recovery -------------------------------------------------------------------------

    async def _recover(self) -> None:
        """Supervise every running container of ours again, all at once (each waits up
        to ``runner_recover_timeout`` for its runner to dial back); remove the rest."""
        containers = await self.driver.list_containers({LABEL_AGENT_ID: self.id})
        async with trio.open_nursery() as nursery:
            for container in containers:
                nursery.start_soon(self._recover_one, container)
        # Scratch directories nobody owns any more (their containers are gone).
        owned = {s.info.kernel_dir for s in self.kernels.values()}
        for kernel_dir in list(self.kernels_root.iterdir()):
            if kernel_dir not in owned:
                await sandbox.release_scratch(kernel_dir)

    async def _recover_one(self, container: docker_driver.ContainerSummary) -> None:
        labels = container.labels
        kernel_id = labels.get(LABEL_KERNEL_ID, "")
        try:
            info = _info_from_label(labels[LABEL_KERNEL_INFO])
        except (KeyError, ValueError, TypeError):
            log.warning("removing container %s with unreadable labels", container.id)
            await self._remove_container(container.id)
            return
        if info.kernel_dir.parent != self.kernels_root or info.kernel_dir.name in ("", ".", ".."):
            # Labelled with our id but kept elsewhere: not ours to touch.
            log.warning("ignoring container %s of another state directory", container.id[:12])
            return
        # Limits are re-applied from today's configuration, not only from the label.
        info = attrs.evolve(info, exec_timeout=self._cap_exec_timeout(info.exec_timeout))
        if container.status == "running":
            try:
                listener = await RunnerListener.open(
                    info.ipc_dir, send_timeout=self.config.agent.runner_send_timeout
                )
            except OSError as exc:
                log.warning("kernel %s: cannot listen for its runner: %s", kernel_id, exc)
            else:
                log.info("recovering kernel %s (container %s)", kernel_id, container.id[:12])
                # A runner that does not dial back in time ends like any kernel that
                # dies (removed and reported as runner-unreachable).
                await self._supervise(
                    info, container.id, listener, self.config.agent.runner_recover_timeout
                )
                return
        log.info("removing dead kernel container %s", container.id[:12])
        await self._remove_container(container.id)
        await self._cleanup_kernel_dir(info)
        await self._emit(KernelTerminated(kernel_id, "agent-restarted"))

    # -- images and heartbeats ------------------------------------------------------------

    async def refresh_images(self) -> tuple[ImageEntry, ...]:
        images = await self.driver.list_images(LABEL_LANG)
        self._images = tuple(
            ImageEntry(ref=tag, id=image.id, labels=dict(image.labels))
            for image in images
            for tag in image.tags
        )
        return self._images

    async def collect_stats(self) -> None:
        """Refresh every kernel's stats and the image list, all calls at once.

        Heartbeats only read what this leaves behind: a heartbeat that waited on Docker
        for each of many kernels would arrive late, and a late enough one gets the
        agent declared lost with all its sessions.
        """

        async def refresh(supervisor: KernelSupervisor) -> None:
            with contextlib.suppress(docker_driver.DockerError):
                supervisor.last_stats = await self._stats(supervisor)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.refresh_images)
            for supervisor in list(self.kernels.values()):
                nursery.start_soon(refresh, supervisor)

    async def _collect_stats_forever(self) -> None:
        while True:
            await trio.sleep(self.config.agent.heartbeat_interval)
            try:
                await self.collect_stats()
            except docker_driver.DockerError:
                log.warning("could not refresh kernel statistics", exc_info=True)

    def heartbeat(self) -> Heartbeat:
        return Heartbeat(
            agent=AgentInfo(
                id=self.id, version=VERSION, capacity=self.capacity, images=self._images
            ),
            kernels=tuple(
                KernelReport(kernel_id, sup.last_stats)
                for kernel_id, sup in list(self.kernels.items())
            ),
        )

    # -- kernel lifecycle -----------------------------------------------------------------

    def _container_spec(self, info: KernelInfo) -> docker_driver.ContainerSpec:
        agent_cfg = self.config.agent
        environ = {**BASE_ENVIRONMENT, **info.environ}
        return docker_driver.ContainerSpec(
            image=info.image,
            name=f"{CONTAINER_NAME_PREFIX}{info.kernel_id}",
            command=(
                "python3",
                f"{RUNNER_DIR}/main.py",
                "--lang",
                info.lang,
                "--socket",
                f"{IPC_DIR}/{SOCKET_NAME}",
            ),
            env=environ,
            labels={
                LABEL_OWNER: OWNER,
                LABEL_KERNEL_ID: info.kernel_id,
                LABEL_AGENT_ID: self.id,
                LABEL_KERNEL_INFO: _info_to_label(info),
            },
            user=CONTAINER_USER,
            workdir=WORK_DIR,
            binds=(
                docker_driver.BindMount(str(info.kernel_dir / "work"), WORK_DIR, False),
                # Read-only: the runner connects to the agent's socket there, and
                # nothing in the container can replace it (docs/security.md).
                docker_driver.BindMount(str(info.ipc_dir), IPC_DIR, True),
                docker_driver.BindMount(RUNNER_HOST_DIR, RUNNER_DIR, True),
                # vfolders go inside /home/work: Docker orders mounts by target depth, so
                # these land on top of the scratch bind, not under it.
                *(
                    docker_driver.BindMount(source, target, read_only)
                    for source, target, read_only in info.mounts
                ),
            ),
            tmpfs=(sandbox.tmp_mount(agent_cfg.tmp_size_bytes),),
            cpu_cores=info.cpu,
            memory_bytes=info.mem,
            pids_limit=agent_cfg.pids_limit,
            hardening=self._hardening,
        )

    async def create_kernel(self, call: CreateKernel) -> KernelCreated:
        kernel_id = call.kernel_id
        if kernel_id in self.kernels:
            raise AgentCallError(f"kernel {kernel_id} already exists", ErrorKind.INVALID_INPUT)
        image = call.image
        labels = await self.driver.image_labels(image)
        lang = labels.get(LABEL_LANG)
        if not lang:
            raise AgentCallError(f"{image} is not a Crucible kernel image", ErrorKind.INVALID_INPUT)
        info = KernelInfo(
            kernel_id=kernel_id,
            image=image,
            lang=lang,
            exec_timeout=self._exec_timeout(labels),
            cpu=call.cpu,
            mem=call.mem,
            environ=dict(call.environ),
            kernel_dir=self.kernels_root / kernel_id.replace("-", "")[:16],
            mounts=await trio.to_thread.run_sync(_vfolder_mounts, call.mounts),
            access_key=call.access_key,
        )
        await sandbox.prepare_scratch(
            info.kernel_dir, size_bytes=self.config.agent.scratch_size_bytes
        )
        try:
            container_id, listener = await self._start_container(info)
        except (docker_driver.DockerError, OSError) as exc:
            await self._cleanup_kernel_dir(info)
            raise AgentCallError(f"could not start the container: {exc}") from exc
        supervisor = await self._supervise(
            info, container_id, listener, self.config.agent.runner_start_timeout
        )
        if supervisor.terminated_reason is not None:
            raise AgentCallError(_start_failure("start", supervisor))
        return KernelCreated(container_id)

    async def _start_container(self, info: KernelInfo) -> tuple[str, RunnerListener]:
        """Listen for the runner first (it dials as soon as it starts), then start it."""
        listener = await RunnerListener.open(
            info.ipc_dir, send_timeout=self.config.agent.runner_send_timeout
        )
        try:
            container_id = await self.driver.create_and_start(self._container_spec(info))
        except BaseException:
            listener.close()
            raise
        return container_id, listener

    def _exec_timeout(self, labels: dict[str, str]) -> float:
        try:
            limit = max(0.0, float(labels.get(LABEL_TIMEOUT) or 0))
        except ValueError:
            limit = 0.0
        return self._cap_exec_timeout(limit)

    def _cap_exec_timeout(self, limit: float) -> float:
        cap = float(self.config.agent.max_exec_seconds)
        if cap and (limit == 0 or limit > cap):
            return cap
        return limit

    async def _supervise(
        self, info: KernelInfo, container_id: str, listener: RunnerListener, timeout: float
    ) -> KernelSupervisor:
        assert self._nursery is not None
        supervisor = KernelSupervisor(
            info,
            container_id,
            on_terminated=self._kernel_died,
            output=self.output.session(),
            listener=listener,
            connect_timeout=timeout,
            limits=self.exec_limits,
            slots=self.run_slots,
        )
        self.kernels[info.kernel_id] = supervisor
        await self._nursery.start(_run_kernel, supervisor)
        return supervisor

    async def _kernel_died(self, supervisor: KernelSupervisor, reason: str) -> None:
        """The kernel ended on its own (crash, OOM, time limit): clean up and report."""
        kernel_id = supervisor.info.kernel_id
        if self.kernels.get(kernel_id) is not supervisor:
            return  # destroyed or restarted on purpose
        del self.kernels[kernel_id]
        try:
            state = await self.driver.inspect(supervisor.container_id)
            if state.oom_killed:
                reason = "out-of-memory"
        except docker_driver.DockerError:
            pass
        if not supervisor.connected.is_set():
            # It never came up: what the runner printed is the only clue; keep it for the
            # error the create (or restart) call returns.
            try:
                supervisor.startup_output = await self.driver.logs(
                    supervisor.container_id, tail_lines=20, max_bytes=4096
                )
            except docker_driver.DockerError:
                pass
        log.info("kernel %s ended: %s", kernel_id, reason)
        await self._destroy_container(supervisor)
        await self._emit(KernelTerminated(kernel_id, reason))

    async def _destroy_container(self, supervisor: KernelSupervisor) -> KernelStats | None:
        stats = supervisor.last_stats
        try:
            stats = await self._stats(supervisor)
        except docker_driver.DockerError:
            pass
        await self._remove_container(supervisor.container_id)
        await self._cleanup_kernel_dir(supervisor.info)
        return stats

    async def _remove_container(self, container_id: str) -> None:
        with trio.CancelScope(shield=True):
            try:
                await self.driver.remove(container_id)
            except docker_driver.DockerError:
                log.warning("could not remove container %s", container_id, exc_info=True)

    async def _cleanup_kernel_dir(self, info: KernelInfo) -> None:
        with trio.CancelScope(shield=True):
            try:
                await sandbox.release_scratch(info.kernel_dir)
            except OSError:
                log.warning("could not release %s", info.kernel_dir, exc_info=True)

    async def _stats(self, supervisor: KernelSupervisor) -> KernelStats:
        stats = await self.driver.stats(supervisor.container_id)
        scratch = sandbox.ScratchDir(supervisor.info.kernel_dir)
        used = await sandbox.scratch_usage_bytes(scratch)
        previous = supervisor.last_stats or KernelStats()
        return attrs.evolve(
            stats,
            io_cur_scratch_size=used,
            io_max_scratch_size=max(used, previous.io_max_scratch_size),
        )

    def _kernel(self, kernel_id: str) -> KernelSupervisor:
        supervisor = self.kernels.get(kernel_id)
        if supervisor is None or supervisor.terminated_reason is not None:
            raise AgentCallError(f"no kernel {kernel_id} on this agent", ErrorKind.KERNEL_NOT_FOUND)
        return supervisor

    async def destroy_kernel(self, call: DestroyKernel) -> KernelDestroyed:
        supervisor = self.kernels.pop(call.kernel_id, None)
        if supervisor is None:
            return KernelDestroyed(stats=None)
        supervisor.mark_terminated(call.reason or "user-requested")
        return KernelDestroyed(stats=await self._destroy_container(supervisor))

    async def restart_kernel(self, call: RestartKernel) -> KernelRestarted:
        old = self._kernel(call.kernel_id)
        info = old.info
        # Take it out of the table first, so its death is not reported as a crash.
        del self.kernels[info.kernel_id]
        old.mark_terminated("restarting")
        await self._remove_container(old.container_id)
        try:
            container_id, listener = await self._start_container(info)
        except (docker_driver.DockerError, OSError) as exc:
            await self._cleanup_kernel_dir(info)
            await self._emit(KernelTerminated(info.kernel_id, "restart-failed"))
            raise AgentCallError(f"could not restart the container: {exc}") from exc
        supervisor = await self._supervise(
            info, container_id, listener, self.config.agent.runner_start_timeout
        )
        if supervisor.terminated_reason is not None:
            raise AgentCallError(_start_failure("restart", supervisor))
        return KernelRestarted(container_id)

    async def execute(self, call: Execute) -> ExecutionResult:
        supervisor = self._kernel(call.kernel_id)
        try:
            return await supervisor.execute(
                call.run_id, call.mode, call.code, call.options, flush_interval=call.flush_interval
            )
        except KernelGone as exc:
            raise AgentCallError(f"the kernel is gone: {exc}", ErrorKind.KERNEL_NOT_FOUND) from exc
        except QueueFull as exc:
            raise AgentCallError(str(exc), ErrorKind.QUEUE_FULL) from exc

    async def cancel_run(self, call: CancelRun) -> RunCancelled:
        """Stop a run whose client went away (queued: never starts; running: interrupted,
        then killed after ``agent.run_cancel_grace``)."""
        return RunCancelled(await self._kernel(call.kernel_id).cancel_run(call.run_id))

    async def interrupt(self, call: Interrupt) -> Done:
        await self._kernel(call.kernel_id).interrupt()
        return Done()

    async def complete(self, call: Complete) -> Completions:
        supervisor = self._kernel(call.kernel_id)
        timeout = self.config.agent.complete_timeout
        items = await supervisor.complete(call.code, call.options, timeout=timeout)
        return Completions(tuple(items))

    async def logs(self, call: GetLogs) -> KernelLogs:
        supervisor = self._kernel(call.kernel_id)
        logs = await self.driver.logs(
            supervisor.container_id, max_bytes=self.config.agent.logs_max_bytes
        )
        return KernelLogs(logs)

    async def list_kernels(self, call: ListKernels) -> KernelList:
        return KernelList(tuple(sorted(self.kernels)))

    async def file_call(self, call: FileCall) -> object:
        """Session files (spec 4.9-4.11); see crucible.agent.files."""
        supervisor = self._kernel(call.kernel_id)
        self.files.forget(set(self.kernels))
        try:
            info = supervisor.info
            return await self.files.call(info.kernel_id, info.kernel_dir, call)
        except FileOpError as exc:
            raise AgentCallError(str(exc), ErrorKind(exc.kind)) from exc

    def calls(self) -> CallTable:
        """The calls managers may make, by class."""
        table = CallTable()
        table.add(CreateKernel, self.create_kernel)
        table.add(DestroyKernel, self.destroy_kernel)
        table.add(RestartKernel, self.restart_kernel)
        table.add(Execute, self.execute)
        table.add(Interrupt, self.interrupt)
        table.add(CancelRun, self.cancel_run)
        table.add(Complete, self.complete)
        table.add(GetLogs, self.logs)
        table.add(ListKernels, self.list_kernels)
        for kind in FILE_CALLS:
            table.add(kind, self.file_call)
        return table


async def _run_kernel(
    supervisor: KernelSupervisor, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    try:
        await supervisor.run(task_status=task_status)
    finally:
        # Nobody can collect this kernel's runs any more: their output stops counting.
        supervisor.output.close()


_MOUNT_TARGET_RE = re.compile(rf"^{re.escape(WORK_DIR)}/[A-Za-z0-9_][A-Za-z0-9._-]{{0,63}}$")
MAX_VFOLDER_MOUNTS = 5


def _vfolder_mounts(requested: tuple[Mount, ...]) -> tuple[tuple[str, str, bool], ...]:
    """Check the manager's mount list: one directory level under /home/work each, from
    an existing host directory no kernel can redirect (`check_trusted_dir`). Blocking:
    run it in a worker thread."""
    if len(requested) > MAX_VFOLDER_MOUNTS:
        raise AgentCallError("mounts must be a list of at most 5 entries", ErrorKind.INVALID_INPUT)
    mounts = []
    targets = set()
    for mount in requested:
        source, target = mount.source, mount.target
        # fullmatch: with match, "$" would let a trailing newline into the target.
        if _MOUNT_TARGET_RE.fullmatch(target) is None or target in targets:
            raise AgentCallError(f"bad mount target {target!r}", ErrorKind.INVALID_INPUT)
        if not os.path.isabs(source):
            raise AgentCallError(f"bad mount source {source!r}", ErrorKind.INVALID_INPUT)
        try:
            # Docker resolves the source by name when the container starts: it must be
            # a path nobody but root can redirect meanwhile (a session's own folder may
            # be its last component, never an ancestor).
            check_trusted_dir(source)
        except FileNotFoundError:
            raise AgentCallError(f"mount source {source} is missing") from None
        except OSError as exc:
            raise AgentCallError(f"mount source refused: {exc}") from None
        targets.add(target)
        mounts.append((source, target, mount.read_only))
    return tuple(mounts)


def _start_failure(action: str, supervisor: KernelSupervisor) -> str:
    message = f"the kernel did not {action}: {supervisor.terminated_reason}"
    output = supervisor.startup_output.strip()
    return f"{message}; its output: {output}" if output else message


def _info_to_label(info: KernelInfo) -> str:
    return json.dumps(
        {
            "kernel_id": info.kernel_id,
            "image": info.image,
            "lang": info.lang,
            "exec_timeout": info.exec_timeout,
            "cpu": info.cpu,
            "mem": info.mem,
            "environ": info.environ,
            "kernel_dir": str(info.kernel_dir),
            "mounts": [list(m) for m in info.mounts],
            "access_key": info.access_key,
        }
    )


def _info_from_label(text: str) -> KernelInfo:
    data = json.loads(text)
    return KernelInfo(
        kernel_id=str(data["kernel_id"]),
        image=str(data["image"]),
        lang=str(data["lang"]),
        exec_timeout=float(data["exec_timeout"]),
        cpu=float(data["cpu"]),
        mem=int(data["mem"]),
        environ={str(k): str(v) for k, v in data["environ"].items()},
        kernel_dir=Path(data["kernel_dir"]),
        mounts=tuple(
            (str(source), str(target), bool(ro)) for source, target, ro in data.get("mounts", [])
        ),
        access_key=str(data.get("access_key", "")),
    )
