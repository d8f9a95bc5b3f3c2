"""The hardening every kernel container gets, as data the Docker driver applies.

Nothing here talks to Docker: `Hardening` is a frozen value that
`crucible.agent.docker_driver` translates into the engine's host config, so the policy can
be read, reviewed and unit-tested in one place. The per-kernel host scratch directory
(a size-limited tmpfs for ``/home/work`` plus the runner's ipc directory) is prepared and
released here as well, because its limits are part of the same containment story.

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
  recognises as the runner (`crucible.agent.runner_peer`); a private IPC namespace, no
  privileged mode, bounded container logs.

Note on memory: pages written to a tmpfs are charged to the memory cgroup of the writer,
so a full ``/home/work`` or ``/tmp`` counts against the kernel's memory limit.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import trio

from crucible.kernels.contract import WORK_GID, WORK_UID

log = logging.getLogger(__name__)

MiB: Final = 1024 * 1024


# -- seccomp --------------------------------------------------------------------------------
#
# Why a deny list (default ALLOW + explicit EPERM) rather than Docker's default allow list:
#
# * The other layers already take away what most dangerous syscalls need: with every
#   capability dropped, uid 1000 and no_new_privs, mount/module/reboot/swap/... fail with
#   EPERM anyway. The filter's job is the *unprivileged* attack surface that capabilities
#   do not cover (ptrace and cross-process memory access, user namespaces, io_uring, bpf,
#   perf, keyrings, userfaultfd) plus defence in depth for the rest. A short, explicit
#   list of what is forbidden is something a reviewer can check line by line.
# * An allow list is tied to the engine's libseccomp/profile vintage. Debian's Docker
#   20.10 predates syscalls that current runtimes and compilers use (e.g. newer glibc and
#   Go/Rust toolchains call faccessat2, close_range, epoll_pwait2, futex_waitv, cachestat);
#   an allow list would make them fail with EPERM in ways that look like user-code bugs.
#
# The trade-off: the filter fails open. A syscall added to the kernel tomorrow is allowed
# until someone adds it here, so a new unprivileged kernel interface with a bug is
# reachable from a kernel container. We accept that because capabilities, the unprivileged
# uid and the cgroup limits still hold, and we prefer kernels that work on the next
# toolchain; review this list when the host kernel is upgraded.
#
# Only the native architecture of each host is listed (no i386/x32/arm32 sub-
# architectures), so a syscall made through a compat ABI (``int 0x80`` on x86_64) does not
# match the filter's architecture and gets libseccomp's bad-architecture action (the
# thread is killed) instead of slipping past a deny list written for native numbers.
# Names unknown to the host's libseccomp are skipped by runc, so listing syscalls that an
# older kernel lacks is harmless.

_EPERM: Final = errno.EPERM
_ENOSYS: Final = errno.ENOSYS

#: Syscalls that always fail with EPERM inside a kernel container.
DENIED_SYSCALLS: Final[tuple[str, ...]] = (
    # Debugging/inspecting other processes: ptrace would let user code tamper with the
    # runner in the same container; kcmp/pidfd_getfd/process_* reach into other processes.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "process_madvise",
    "kcmp",
    "pidfd_getfd",
    # Filesystem namespace changes: mounts, pivot_root, chroot and the new mount API.
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    # New namespaces: a user namespace hands out capabilities inside it and exposes
    # large kernel surface (clone with CLONE_NEW* flags is filtered below).
    "unshare",
    "setns",
    # Kernel replacement, modules, reboot.
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "query_module",
    "get_kernel_syms",
    "reboot",
    # Frequent sources of kernel exploits reachable without privileges.
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "keyctl",
    "add_key",
    "request_key",
    # File handles bypass path-based checks (the "shocker" container escape).
    "open_by_handle_at",
    "name_to_handle_at",
    # Host-wide administration.
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "syslog",
    "settimeofday",
    "stime",
    "clock_settime",
    "clock_settime64",
    "clock_adjtime",
    "clock_adjtime64",
    "adjtimex",
    "sethostname",
    "setdomainname",
    "iopl",
    "ioperm",
    "vhangup",
    "fanotify_init",
    "nfsservctl",
    # Linux 6.17's path-based FS_IOC_FSSETXATTR (see QUOTA_ESCAPING_IOCTLS); skipped by
    # a libseccomp that does not know it yet.
    "file_setattr",
    # Obsolete interfaces nobody legitimately uses any more.
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "vm86",
    "vm86old",
)

# clone(2) takes its flags in the first argument on x86_64 and aarch64 (both listed
# architectures), so each namespace flag can be matched with a masked compare. One rule
# per flag because libseccomp ANDs the conditions inside a rule.
_CLONE_NAMESPACE_FLAGS: Final[Mapping[str, int]] = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}


# ioctl(2) requests that would let a session slip out of its folder's filesystem quota
# (see crucible.plugins.storage.folder_quotas). Numbers as linux/fs.h and linux/btrfs.h
# define them; a unit test checks them against the storage plugin's own definitions.
QUOTA_ESCAPING_IOCTLS: Final[Mapping[str, int]] = {
    # Changing a file's project id, or clearing PROJINHERIT, moves it out of its
    # folder's project quota; the kernel allows a file's owner that outside user
    # namespaces.
    "FS_IOC_FSSETXATTR": 0x401C5820,
    "FS_IOC_SETFLAGS": 0x40086602,
    "FS_IOC32_SETFLAGS": 0x40046602,
    # A subvolume (or snapshot) made inside a btrfs folder gets a quota group of its
    # own, outside the folder's limit; unprivileged users may make them.
    "BTRFS_IOC_SNAP_CREATE": 0x50009401,
    "BTRFS_IOC_SUBVOL_CREATE": 0x5000940E,
    "BTRFS_IOC_SNAP_CREATE_V2": 0x50009417,
    "BTRFS_IOC_SUBVOL_CREATE_V2": 0x50009418,
}


def _build_seccomp_profile() -> dict[str, Any]:
    syscalls: list[dict[str, Any]] = [
        {"names": list(DENIED_SYSCALLS), "action": "SCMP_ACT_ERRNO", "errnoRet": _EPERM},
    ]
    for flag in _CLONE_NAMESPACE_FLAGS.values():
        syscalls.append(
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": _EPERM,
                "args": [
                    {"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"},
                ],
            }
        )
    for request in QUOTA_ESCAPING_IOCTLS.values():
        # The kernel reads the request as 32 bits: compare only those, or a request
        # with junk in the upper half would pass the rule and still reach the ioctl.
        syscalls.append(
            {
                "names": ["ioctl"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": _EPERM,
                "args": [
                    {
                        "index": 1,
                        "value": 0xFFFFFFFF,
                        "valueTwo": request,
                        "op": "SCMP_CMP_MASKED_EQ",
                    },
                ],
            }
        )
    # clone3 passes its flags in a struct that seccomp cannot inspect. ENOSYS (not EPERM)
    # makes glibc fall back to clone(2), where the namespace rules above apply.
    syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS})
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": []},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": []},
        ],
        "syscalls": syscalls,
    }


#: The Docker seccomp profile of every kernel container (Docker's JSON profile format).
SECCOMP_PROFILE: Final[Mapping[str, Any]] = _build_seccomp_profile()


def seccomp_profile_json() -> str:
    """The profile as the JSON text Docker expects after ``seccomp=`` in SecurityOpt."""
    return json.dumps(SECCOMP_PROFILE, separators=(",", ":"), sort_keys=True)


# -- container hardening --------------------------------------------------------------------


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
    #: (`crucible.agent.runner_peer`), and pid 1 cannot be killed from inside.
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


# -- host scratch directory -----------------------------------------------------------------

_MS_NOSUID: Final = 0x2
_MS_NODEV: Final = 0x4
_MNT_DETACH: Final = 0x2
#: umount2: never follow a symbolic link in the last component.
_UMOUNT_NOFOLLOW: Final = 0x8


class ScratchError(OSError):
    """Preparing or releasing a scratch directory failed (mount/umount errors)."""


@attrs.frozen
class ScratchDir:
    """The host side of one kernel's storage.

    ``root/work`` is bind-mounted at ``/home/work``: a tmpfs owned by uid/gid 1000, the
    only part the kernel can write. ``root/ipc`` holds the agent's socket for the
    runner and is bind-mounted read-only: a plain directory owned by root (mode 0755),
    so the kernel can connect to the socket but never replace it. ``root`` itself (and
    ``root/staging``, upload staging) is the agent's alone.
    """

    root: Path

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def ipc(self) -> Path:
        return self.root / "ipc"


def _libc() -> ctypes.CDLL:
    # mount(2)/umount2(2) through libc rather than the mount(8) binary: exact errno values
    # to decide what is tolerable, and no dependency on util-linux's option parsing.
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _mount_tmpfs(target: Path, *, size_bytes: int, mode: int, uid: int, gid: int) -> None:
    # nr_inodes bounds the kernel memory a kernel can pin by creating empty files, which
    # ``size`` does not limit; one inode per 2 KiB of size is generous for source trees.
    nr_inodes = max(1024, size_bytes // 2048)
    data = f"size={size_bytes},nr_inodes={nr_inodes},mode={mode:o},uid={uid},gid={gid}"
    libc = _libc()
    rc = libc.mount(
        b"crucible-scratch",
        os.fsencode(target),
        b"tmpfs",
        ctypes.c_ulong(_MS_NOSUID | _MS_NODEV),
        data.encode(),
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise ScratchError(err, f"mount tmpfs on {target}: {os.strerror(err)}")


def _umount(target: Path) -> None:
    """Unmount every tmpfs stacked on *target*; tolerate "not mounted" and "not there"."""
    libc = _libc()
    # A path can carry several stacked mounts (e.g. after a crash between mount and
    # bookkeeping); unmount until it is a plain directory again, with a bound.
    for _ in range(8):
        if not os.path.ismount(target):
            return
        if libc.umount2(os.fsencode(target), _UMOUNT_NOFOLLOW) == 0:
            continue
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):
            return
        if err == errno.EBUSY:
            # Something on the host still holds it (a process with its cwd there);
            # detach lazily so the directory can go now and the memory when they leave.
            if libc.umount2(os.fsencode(target), _MNT_DETACH | _UMOUNT_NOFOLLOW) == 0:
                continue
            err = ctypes.get_errno()
        raise ScratchError(err, f"umount {target}: {os.strerror(err)}")
    raise ScratchError(errno.EBUSY, f"umount {target}: still mounted after 8 unmounts")


def _check_root(root: Path) -> Path:
    root = Path(root)
    if not root.is_absolute() or root == Path(root.anchor):
        raise ValueError(f"scratch root must be an absolute, non-root path: {root!s}")
    return root


def _agent_dir(path: Path, mode: int) -> None:
    """`path` as a real directory owned by the agent, writable by nobody else."""
    path.mkdir(mode=mode, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchown(fd, os.geteuid(), os.getegid())
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _prepare_sync(root: Path, size_bytes: int, uid: int, gid: int) -> ScratchDir:
    scratch = ScratchDir(root)
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    _agent_dir(root, 0o755)
    scratch.work.mkdir(mode=0o700, exist_ok=True)
    # Already mounted means a restart of the session or of the agent: keep the
    # contents (spec 4.5 keeps /home/work across restarts).
    if not os.path.ismount(scratch.work):
        _mount_tmpfs(scratch.work, size_bytes=size_bytes, mode=0o755, uid=uid, gid=gid)
    # Kernels made before the agent owned the ipc directory had a tmpfs there, writable
    # by the kernel: never reuse it.
    _umount(scratch.ipc)
    _agent_dir(scratch.ipc, 0o755)
    return scratch


def _release_sync(root: Path, remove: bool) -> None:
    scratch = ScratchDir(root)
    for path in (scratch.work, scratch.ipc):
        _umount(path)
    if remove and root.exists():
        # Only after both unmounts succeeded, and without following symlinks, so this can
        # never delete through a mount into someone else's files.
        for path in (scratch.work, scratch.ipc):
            if os.path.ismount(path):
                raise ScratchError(errno.EBUSY, f"{path} is still a mount point")
        shutil.rmtree(root)


async def prepare_scratch(
    root: Path,
    *,
    size_bytes: int,
    uid: int = WORK_UID,
    gid: int = WORK_GID,
) -> ScratchDir:
    """Create *root* with a tmpfs of *size_bytes* at ``root/work`` and the ipc directory.

    ``root/work`` gets mode 0755, owned by *uid*:*gid*; ``root/ipc`` mode 0755, owned by
    the agent. Idempotent: a work mount that already exists is kept with its contents.
    Needs root (CAP_SYS_ADMIN) on the host.
    """
    root = _check_root(root)
    if size_bytes <= 0:
        raise ValueError("size_bytes must be positive")
    return await trio.to_thread.run_sync(_prepare_sync, root, size_bytes, uid, gid)


async def release_scratch(root: Path, *, remove: bool = True) -> None:
    """Unmount the tmpfs mounts of a scratch directory and (by default) delete *root*.

    Idempotent: an already unmounted or missing directory is not an error. The contents
    are lost; call this only when the session is destroyed, not when it restarts.
    """
    root = _check_root(root)
    await trio.to_thread.run_sync(_release_sync, root, remove)


def _usage_sync(path: Path) -> int:
    try:
        st = os.statvfs(path)
    except FileNotFoundError:
        return 0
    return (st.f_blocks - st.f_bfree) * st.f_frsize


async def scratch_usage_bytes(scratch: ScratchDir) -> int:
    """Bytes used in ``/home/work`` now (spec 4.4 ``io_cur_scratch_size``); 0 if gone."""
    return await trio.to_thread.run_sync(_usage_sync, scratch.work)
