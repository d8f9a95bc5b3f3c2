"""The policy every kernel container gets whatever its image or request says.

`Hardening` (with its `Ulimit` and `TmpfsMount` parts) is a frozen value that the
Docker driver translates into the engine's host config.
"""

from __future__ import annotations

from typing import Final

import attrs

from crucible.agent.sandbox.seccomp import seccomp_profile_json

MiB: Final = 1024 * 1024



@attrs.frozen
class Ulimit:
    """One resource limit (``setrlimit``) set on the container's first process."""

    name: str
    soft: int
    hard: int


@attrs.frozen
class TmpfsMount:
    """A tmpfs the engine mounts inside the container (Docker's ``--tmpfs``)."""

    target: str
    size_bytes: int = attrs.field(validator=attrs.validators.gt(0))
    mode: int = 0o1777
    #: Docker's own tmpfs default is ``noexec``; see `tmp_mount` for why /tmp allows exec.
    exec_allowed: bool = False

    def options(self) -> str:
        """The mount option string Docker expects as the value in ``Tmpfs``."""
        opts = [
            "rw",
            "exec" if self.exec_allowed else "noexec",
            "nosuid",
            "nodev",
            f"size={self.size_bytes}",
            f"mode={self.mode:o}",
        ]
        return ",".join(opts)


def tmp_mount(size_bytes: int) -> TmpfsMount:
    """``/tmp`` of a kernel container: a tmpfs of *size_bytes*, world-writable, sticky.

    It is mounted with ``exec``: ``/home/work`` must allow exec anyway (batch mode builds
    and runs ``./main`` there), so ``noexec`` on ``/tmp`` would stop no attacker, while it
    breaks real tools that execute or ``mmap(PROT_EXEC)`` files under ``$TMPDIR`` (``go
    run``, some test runners, libffi closures, JITs that spill to a file). ``nosuid`` and
    ``nodev`` stay.
    """
    return TmpfsMount(target="/tmp", size_bytes=size_bytes, mode=0o1777, exec_allowed=True)


@attrs.frozen
class Hardening:
    """Settings that every kernel container gets whatever its image or request says.

    Per-kernel quantities (memory, CPU, pids limit, tmpfs sizes) live in the driver's
    ``ContainerSpec``; this class holds the policy that does not vary between kernels.
    """

    network_mode: str = "none"
    cap_drop: tuple[str, ...] = ("ALL",)
    no_new_privileges: bool = True
    #: The seccomp profile as JSON text; `seccomp_profile_json` by default.
    seccomp_profile: str = attrs.field(factory=seccomp_profile_json, repr=False)
    #: ``nofile`` bounds descriptors per process (the pids limit bounds processes);
    #: ``core=0`` so a crash never writes a core file of the size of the memory limit.
    ulimits: tuple[Ulimit, ...] = (
        Ulimit("nofile", 4096, 4096),
        Ulimit("core", 0, 0),
    )
    #: No ``docker-init``: the kernel runner is pid 1. It reaps orphans itself and kills
    #: what a run leaves behind; being pid 1 is also how the agent recognises it
    #: (`crucible.agent.kernel.runner_peer`), and pid 1 cannot be killed from inside.
    init: bool = False
    ipc_mode: str = "private"
    privileged: bool = False
    #: The kernel OOM killer must act inside the container when it hits its limit;
    #: disabling it would freeze the container's processes instead.
    oom_kill_disable: bool = False
    #: On a *host-wide* memory shortage, kill kernel processes before host daemons.
    oom_score_adj: int = 500
    #: Swap allowed on top of the memory limit (Docker's memswap = memory + this).
    swap_bytes: int = 0
    read_only_rootfs: bool = True
    #: Docker's ``/dev/shm`` (charged to the container's memory cgroup).
    shm_size_bytes: int = 64 * MiB
    #: The json-file log driver is unbounded by default; a kernel printing in a loop
    #: must not fill the host's disk.
    log_driver: str = "json-file"
    log_options: tuple[tuple[str, str], ...] = (("max-size", "4m"), ("max-file", "2"))

    def security_opt(self) -> list[str]:
        """The ``SecurityOpt`` strings of the host config."""
        opts = [f"seccomp={self.seccomp_profile}"]
        if self.no_new_privileges:
            opts.append("no-new-privileges:true")
        return opts


#: The policy the agent uses for every kernel container.
DEFAULT_HARDENING: Final = Hardening()
