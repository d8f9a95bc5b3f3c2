"""The host side of one kernel's storage: its scratch directory, prepared and released.

``/home/work`` is a size-limited tmpfs the agent mounts on the host (so its limit is
the kernel's disk limit, and a full one hurts nobody else); the runner's ipc directory
beside it is the agent's alone. Needs root (CAP_SYS_ADMIN) on the host.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import attrs
import trio

from crucible.agent.sandbox.mounting import MountError, MountFlag, UnmountFlag, mount, unmount
from crucible.kernels.contract import WORK_GID, WORK_UID


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


def _mount_tmpfs(target: Path, *, size_bytes: int, mode: int, uid: int, gid: int) -> None:
    # nr_inodes bounds the kernel memory a kernel can pin by creating empty files, which
    # ``size`` does not limit; one inode per 2 KiB of size is generous for source trees.
    nr_inodes = max(1024, size_bytes // 2048)
    data = f"size={size_bytes},nr_inodes={nr_inodes},mode={mode:o},uid={uid},gid={gid}"
    flags = MountFlag.NOSUID | MountFlag.NODEV
    mount("crucible-scratch", str(target), flags, fstype="tmpfs", data=data)


def _umount(target: Path) -> None:
    """Unmount every tmpfs stacked on *target*; tolerate "not mounted" and "not there"."""
    # A path can carry several stacked mounts (e.g. after a crash between mount and
    # bookkeeping); unmount until it is a plain directory again, with a bound.
    for _ in range(8):
        if not os.path.ismount(target):
            return
        try:
            if not unmount(str(target)):
                return
        except MountError as exc:
            if exc.errno != errno.EBUSY:
                raise
            # Something on the host still holds it (a process with its cwd there);
            # detach lazily so the directory can go now and the memory when they leave.
            unmount(str(target), UnmountFlag.DETACH | UnmountFlag.NOFOLLOW)
    raise MountError(errno.EBUSY, f"umount {target}: still mounted after 8 unmounts")


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
                raise MountError(errno.EBUSY, f"{path} is still a mount point")
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
