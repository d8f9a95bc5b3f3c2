"""The containment of kernel containers: the policy as data, and the host scratch space.

Nothing here talks to Docker: the policy is frozen values that the Docker driver
(`crucible.agent.docker.driver`) translates into the engine's host config, so it can be
read, reviewed and unit-tested in one place. The per-kernel host scratch directory (a
size-limited tmpfs for ``/home/work`` plus the runner's ipc directory) is prepared and
released here as well, because its limits are part of the same containment story.

* `seccomp`: the syscall filter (`SECCOMP_PROFILE`) and why it is a deny list;
* `hardening`: `Hardening`, what every container gets (`DEFAULT_HARDENING`), and the
  ``/tmp`` tmpfs (`tmp_mount`);
* `scratch`: `prepare_scratch`, `release_scratch` and `scratch_usage_bytes`;
* `mounting`: mount(2) and umount2(2) with their flags, for the scratch space and the
  warm pool's folder mounts (`crucible.agent.pool.mounts`).

Containment layers, outermost first (each one assumes the others may fail):

* no network at all (``--network none``: only a loopback interface);
* an unprivileged user (uid 1000) with every capability dropped, ``no-new-privileges``
  (setuid binaries cannot raise privileges) and a seccomp filter that denies the syscalls
  used to escape or to attack the kernel (`SECCOMP_PROFILE`);
* cgroup limits: pids (fork bombs), memory with no swap (memory bombs end in an OOM kill
  inside the container, not on the host), CPU quota;
* a read-only root filesystem; the only writable places are size-limited tmpfs mounts
  (``/tmp``, ``/home/work``, Docker's 64 MiB ``/dev/shm``), so a kernel can never fill
  the host's disk; the ipc directory with the agent's socket is mounted read-only;
* the kernel runner as pid 1 (no docker-init): it reaps orphans and kills whatever a
  run leaves behind (`crucible.agent.runner.reaper`), and it is the process the agent
  recognises as the runner (`crucible.agent.kernel.runner_peer`); a private IPC namespace, no
  privileged mode, bounded container logs.

Note on memory: pages written to a tmpfs are charged to the memory cgroup of the writer,
so a full ``/home/work`` or ``/tmp`` counts against the kernel's memory limit.
"""


from crucible.agent.sandbox.hardening import (
    DEFAULT_HARDENING,
    Hardening,
    TmpfsMount,
    Ulimit,
    tmp_mount,
)
from crucible.agent.sandbox.mounting import MountError
from crucible.agent.sandbox.scratch import (
    ScratchDir,
    prepare_scratch,
    release_scratch,
    scratch_usage_bytes,
)
from crucible.agent.sandbox.seccomp import (
    DENIED_SYSCALLS,
    QUOTA_ESCAPING_IOCTLS,
    SECCOMP_PROFILE,
    seccomp_profile_json,
)

__all__ = [
    "DEFAULT_HARDENING",
    "DENIED_SYSCALLS",
    "QUOTA_ESCAPING_IOCTLS",
    "SECCOMP_PROFILE",
    "Hardening",
    "MountError",
    "ScratchDir",
    "TmpfsMount",
    "Ulimit",
    "prepare_scratch",
    "release_scratch",
    "scratch_usage_bytes",
    "seccomp_profile_json",
    "tmp_mount",
]
