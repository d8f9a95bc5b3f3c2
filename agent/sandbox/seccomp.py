"""The seccomp filter of every kernel container, as Docker's JSON profile.

A unit test checks `QUOTA_ESCAPING_IOCTLS` against the storage plugins' own numbers.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Mapping
from typing import Any, Final

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
