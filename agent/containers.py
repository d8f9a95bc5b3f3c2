"""What a kernel's container is made of: its spec, its binds and the mounts it may get.

The container contract (user, paths, labels) is `crucible.kernels.contract`; this is
how this agent applies it: the runner's bind-mounted code, the scratch and ipc
directories, the vfolders the manager asked for (checked: `vfolder_mounts`), the
hardening and the limits of its configuration.
"""

from __future__ import annotations

import compileall
import os
import re
from pathlib import Path

import attrs

import crucible.agent
from crucible.agent import sandbox
from crucible.agent.accelerators import Accelerators
from crucible.agent.calls import AgentCallError
from crucible.agent.docker.specs import BindMount, ContainerSpec
from crucible.agent.hostpaths import check_trusted_dir
from crucible.agent.kernel.info import KernelInfo, info_to_label
from crucible.agent.kernel.runner_link import SOCKET_NAME
from crucible.config import AgentConfig
from crucible.kernels.contract import (
    BASE_ENVIRONMENT,
    CONTAINER_NAME_PREFIX,
    CONTAINER_USER,
    IPC_DIR,
    LABEL_AGENT_ID,
    LABEL_KERNEL_ID,
    LABEL_KERNEL_INFO,
    LABEL_OWNER,
    LABEL_POOL,
    LABEL_TIMEOUT,
    OWNER,
    RUNNER_DIR,
    WORK_DIR,
)
from crucible.protocol.calls import Mount
from crucible.protocol.failures import ErrorKind

#: The runner's code on the host, bind-mounted read-only into every kernel.
RUNNER_HOST_DIR = str(Path(crucible.agent.__file__).parent / "runner")


def compile_runner() -> None:
    """Byte-compile the runner where it lies on the host (blocking; a no-op once done).

    A kernel's Python cannot write into its read-only mount of the runner, so without
    this it compiles every runner module from source at each container start: about a
    third of the runner's start-up on a small host. Images whose Python is this one's
    version (the bookworm ones: 3.11) read these files; the others compile as before.
    A directory the agent may not write (a read-only install) is left as it is
    (`compileall` skips what it cannot write; `quiet=2` keeps that out of the log).
    """
    compileall.compile_dir(RUNNER_HOST_DIR, quiet=2)

_MOUNT_TARGET_RE = re.compile(rf"^{re.escape(WORK_DIR)}/[A-Za-z0-9_][A-Za-z0-9._-]{{0,63}}$")
MAX_VFOLDER_MOUNTS = 5


@attrs.frozen
class ContainerPolicy:
    """How this agent makes kernel containers: its hardening, limits and labels."""

    config: AgentConfig
    agent_id: str
    #: The devices a kernel's allocation names, and what its container needs to use them.
    accelerators: Accelerators
    hardening: sandbox.Hardening = attrs.field(init=False)

    @hardening.default
    def _hardening(self) -> sandbox.Hardening:
        # A kernel writes its own container log: `[agent] container_log_*` bound it.
        return attrs.evolve(
            sandbox.DEFAULT_HARDENING,
            log_options=(
                ("max-size", str(self.config.container_log_max_bytes)),
                ("max-file", str(self.config.container_log_files)),
            ),
        )

    def spec(self, info: KernelInfo) -> ContainerSpec:
        """The container of kernel `info`: the runner as its first process, with what
        its accelerator devices need (device requests, variables, read-only mounts)."""
        devices = self.accelerators.container_settings(info.allocation)
        # The devices' variables win: a session cannot point itself at devices not its own
        # (the device requests decide what it can reach anyway).
        environ = {**BASE_ENVIRONMENT, **info.environ, **devices.environ}
        return ContainerSpec(
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
                LABEL_AGENT_ID: self.agent_id,
                LABEL_KERNEL_INFO: info_to_label(info),
            },
            user=CONTAINER_USER,
            workdir=WORK_DIR,
            binds=(
                BindMount(str(info.kernel_dir / "work"), WORK_DIR, False),
                # Read-only: the runner connects to the agent's socket there, and
                # nothing in the container can replace it (docs/security.md).
                BindMount(str(info.ipc_dir), IPC_DIR, True),
                BindMount(RUNNER_HOST_DIR, RUNNER_DIR, True),
                # vfolders go inside /home/work: Docker orders mounts by target depth, so
                # these land on top of the scratch bind, not under it.
                *(
                    BindMount(source, target, read_only)
                    for source, target, read_only in info.mounts
                ),
                *(BindMount(m.host_path, m.container_path, True) for m in devices.mounts),
            ),
            tmpfs=(sandbox.tmp_mount(self.config.tmp_size_bytes),),
            cpu_cores=info.cpu,
            memory_bytes=info.mem,
            pids_limit=self.config.pids_limit,
            hardening=self.hardening,
            device_requests=devices.device_requests,
        )

    def pooled_spec(self, info: KernelInfo) -> ContainerSpec:
        """A warm pool's kernel: labelled as pooled, its /home/work bind following the
        mounts the agent adds on the host (vfolders at claim, `crucible.agent.pool.mounts`)."""
        spec = self.spec(info)
        work, *others = spec.binds
        return attrs.evolve(
            spec,
            labels={**spec.labels, LABEL_POOL: info.image},
            binds=(attrs.evolve(work, propagation="rslave"), *others),
        )

    def exec_timeout(self, labels: dict[str, str]) -> float:
        """Seconds one run may take in an image with `labels` (0: unlimited)."""
        try:
            limit = max(0.0, float(labels.get(LABEL_TIMEOUT) or 0))
        except ValueError:
            limit = 0.0
        return self.cap_exec_timeout(limit)

    def cap_exec_timeout(self, limit: float) -> float:
        """`limit`, held to ``agent.max_exec_seconds``."""
        cap = float(self.config.max_exec_seconds)
        if cap and (limit == 0 or limit > cap):
            return cap
        return limit


def vfolder_mounts(requested: tuple[Mount, ...]) -> tuple[tuple[str, str, bool], ...]:
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
