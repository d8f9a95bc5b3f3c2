"""Filesystems on loop devices that a test makes, mounts and always takes down again.

`loop_filesystem` makes a sparse image in a private temporary directory, formats it,
attaches it to a free loop device and mounts it; on leaving (also after a failure) it
unmounts (lazily if something still holds the mount), detaches the device and deletes
the image. When the machine cannot do it (not root, no loop devices, no mkfs, a kernel
without the feature) it skips the test with the precise reason. Use it from sync
fixtures: pytest-trio drops the reason of a skip raised inside an async test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

MiB = 1024 * 1024
#: Every command here is local and quick; one that hangs must not hang the suite.
COMMAND_TIMEOUT = 60


class LoopFsUnavailable(Exception):
    """This machine cannot make the filesystem the test needs; the message says why."""


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)


def _kernel_says(device: str) -> str:
    """The kernel's last messages about `device` (why a mount was refused)."""
    name = os.path.basename(device)
    try:
        log = _run(["dmesg"]).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = [line.split("] ", 1)[-1] for line in log.splitlines() if f"({name})" in line]
    return lines[-1] if lines else ""


def _check_machine(mkfs: str) -> None:
    if os.geteuid() != 0:
        raise LoopFsUnavailable("loop mounts need root")
    if not os.path.exists("/dev/loop-control"):
        raise LoopFsUnavailable("no loop devices (/dev/loop-control is missing)")
    if shutil.which(mkfs) is None:
        raise LoopFsUnavailable(f"{mkfs} is not installed (scripts/bootstrap installs it)")


def _unmount(mount_point: Path) -> None:
    if _run(["umount", str(mount_point)]).returncode != 0:
        # Busy (a process still in it): detach now, the kernel finishes when it leaves.
        _run(["umount", "-l", str(mount_point)])


@contextmanager
def loop_filesystem(
    mount_point: Path,
    mkfs: list[str],
    *,
    size_bytes: int,
    mount_options: str = "",
    prepare: Callable[[Path], None] | None = None,
) -> Iterator[Path]:
    """Mount a fresh filesystem (`mkfs` + the image path as the last argument) at
    `mount_point` (made if missing) for the duration of the block; skip the test, with
    the reason, where this machine cannot.

    `prepare(mount_point)` runs after mounting (e.g. ``btrfs quota enable``); raising
    `LoopFsUnavailable` there skips just like a refused mount.
    """
    with ExitStack() as undo:  # each step registers its own undoing, run in reverse
        try:
            _check_machine(mkfs[0])
            workdir = Path(tempfile.mkdtemp(prefix="crucible-loopfs-"))
            undo.callback(shutil.rmtree, workdir, ignore_errors=True)
            image = workdir / "image"
            with image.open("wb") as f:
                f.truncate(size_bytes)
            made = _run([*mkfs, str(image)])
            if made.returncode != 0:
                raise LoopFsUnavailable(f"{mkfs[0]} failed: {made.stderr.strip()}")
            attached = _run(["losetup", "--find", "--show", str(image)])
            if attached.returncode != 0:
                raise LoopFsUnavailable(f"no free loop device: {attached.stderr.strip()}")
            device = attached.stdout.strip()
            undo.callback(_run, ["losetup", "--detach", device])
            mount_point.mkdir(parents=True, exist_ok=True)
            options = ["-o", mount_options] if mount_options else []
            result = _run(["mount", *options, device, str(mount_point)])
            if result.returncode != 0:
                said = _kernel_says(device) or result.stderr.strip()
                raise LoopFsUnavailable(f"mount -o {mount_options or 'defaults'} refused: {said}")
            undo.callback(_unmount, mount_point)
            if prepare is not None:
                prepare(mount_point)
        except LoopFsUnavailable as exc:
            pytest.skip(str(exc))
        yield mount_point


@contextmanager
def tmpfs_directory() -> Iterator[Path]:
    """A fresh directory on the machine's /dev/shm tmpfs (a filesystem without quotas)."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm tmpfs on this machine")
    path = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="crucible-vf-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def btrfs_quota_on(mount_point: Path) -> None:
    done = _run(["btrfs", "quota", "enable", str(mount_point)])
    if done.returncode != 0:
        raise LoopFsUnavailable(f"btrfs quota enable failed: {done.stderr.strip()}")


@contextmanager
def btrfs_with_quotas(mount_point: Path, size_bytes: int = 512 * MiB) -> Iterator[Path]:
    if shutil.which("btrfs") is None:
        pytest.skip("btrfs-progs is not installed (scripts/bootstrap installs it)")
    with loop_filesystem(
        mount_point,
        ["mkfs.btrfs", "-q", "-f"],
        size_bytes=size_bytes,
        prepare=btrfs_quota_on,
    ) as mounted:
        yield mounted
