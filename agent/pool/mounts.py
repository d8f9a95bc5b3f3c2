"""A claimed kernel's vfolders, mounted into its running container from the host.

A pooled kernel's ``/home/work`` tmpfs is a *shared* mount on the host, bind-mounted
into its container with ``rslave`` propagation: a mount the agent adds under it on the
host appears in the container (and nothing the container does comes back). At claim
the agent mounts each vfolder there:

1. a bind of the folder onto a directory of its own staging mount (a private
   self-bind, so the step stays invisible everywhere else); a read-only folder is
   remounted read-only there, before anyone can see it (a remount does not propagate);
2. the mount point ``/home/work/<name>`` made on the host (mode 0755, root's, as Docker
   makes one), without following links;
3. the staged mount moved onto it (``MS_MOVE``), which propagates into the container.

A pooled kernel has run nothing but its runner until it is claimed, and the claim
finishes before its session can run code: nothing of the user's is in that directory
yet. Needs root (CAP_SYS_ADMIN) on the host.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from crucible.agent.sandbox.mounting import MountFlag, UnmountFlag, mount, unmount


def _detach(target: str) -> None:
    unmount(target, UnmountFlag.DETACH | UnmountFlag.NOFOLLOW)


def share(work: Path) -> None:
    """Make the tmpfs at `work` a shared mount (its container's bind then follows it)."""
    mount(None, str(work), MountFlag.SHARED)


def attach(work: Path, stage: Path, mounts: Sequence[tuple[str, str, bool]]) -> None:
    """Mount each ``(host path, container path, read-only)`` of `mounts` (checked by
    `crucible.agent.containers.vfolder_mounts`: one level under /home/work) at its
    place under `work`, through the staging directory `stage` (created here, removed
    again). Blocking."""
    if not mounts:
        return
    stage.mkdir(mode=0o700, parents=True, exist_ok=True)
    mount(str(stage), str(stage), MountFlag.BIND)
    try:
        mount(None, str(stage), MountFlag.PRIVATE)
        work_fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            for source, target, read_only in mounts:
                _attach_one(work_fd, stage, source, target.rsplit("/", 1)[1], read_only)
        finally:
            os.close(work_fd)
    finally:
        _detach(str(stage))
        for entry in os.listdir(stage):
            # Only empty mount points are left: rmdir never reaches into a folder.
            os.rmdir(stage / entry)
        os.rmdir(stage)


def _attach_one(work_fd: int, stage: Path, source: str, name: str, read_only: bool) -> None:
    staged = stage / name
    staged.mkdir(mode=0o755)
    mount(source, str(staged), MountFlag.BIND)
    try:
        if read_only:
            remount = MountFlag.BIND | MountFlag.REMOUNT | MountFlag.RDONLY
            mount(None, str(staged), remount | MountFlag.NOSUID | MountFlag.NODEV)
        os.mkdir(name, 0o755, dir_fd=work_fd)
        point = os.open(
            name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=work_fd
        )
        try:
            # The mount point by descriptor: the path is never looked up again.
            mount(str(staged), f"/proc/self/fd/{point}", MountFlag.MOVE)
        finally:
            os.close(point)
    except BaseException:
        _detach(str(staged))
        raise


def sweep_stages(stage_root: Path) -> None:
    """Detach and remove what an interrupted `attach` left under `stage_root`: its
    entries are unmounted and removed with rmdir only, so a folder still mounted there
    is never entered. Blocking."""
    if not stage_root.is_dir():
        return
    for stage in stage_root.iterdir():
        if stage.is_symlink() or not stage.is_dir():
            continue
        # Detaching the staging mount takes whatever is mounted under it along.
        _detach(str(stage))
        for entry in stage.iterdir():
            _detach(str(entry))
            with contextlib.suppress(OSError):
                os.rmdir(entry)
        with contextlib.suppress(OSError):
            os.rmdir(stage)
