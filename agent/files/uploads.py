"""Uploads into a kernel's work tree: staged outside it, written only by a commit.

The content of each file is staged in an unnamed temporary file in an agent-only
folder; only a commit that finds every target acceptable writes anything, so a refused
upload leaves ``/home/work`` untouched. What is written is handed to the kernel user
through its descriptor, and never over a file that is not the session's own.
"""

from __future__ import annotations

import base64
import errno
import itertools
import os
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Final, TypeVar

import attrs

from crucible.agent.files.paths import (
    FileOpError,
    container_path,
    invalid,
    open_root,
    split_path,
    walk,
)
from crucible.kernels.contract import WORK_GID, WORK_UID
from crucible.kernels.limits import MAX_UPLOAD_FILE_BYTES, MAX_UPLOAD_FILES

T = TypeVar("T")

#: Uploads a kernel may have open at once (how long one may sit idle is
#: ``agent.upload_idle_timeout``).
MAX_OPEN_UPLOADS: Final = 8


def _check_target(root_fd: int, parts: list[str]) -> None:
    """Refuse an upload target that could not be written: called for every file first."""
    shown = container_path(parts)
    if not parts:
        raise invalid(f"{shown} is a directory, not a file name")
    try:
        fd = walk(root_fd, parts[:-1], owned=True)
    except FileOpError as exc:
        if exc.kind == "file-not-found":
            return  # the rest will be created
        raise
    try:
        try:
            st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise invalid(f"{shown} is a symbolic link; links are not followed")
        if not stat.S_ISREG(st.st_mode):
            raise invalid(f"{shown} exists and is not a regular file")
    finally:
        os.close(fd)


def _write_file(root_fd: int, parts: list[str], content: IO[bytes]) -> None:
    shown = container_path(parts)
    parent = walk(root_fd, parts[:-1], create=True)
    try:
        fd, created = _open_target(parent, parts[-1], shown)
    finally:
        os.close(parent)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise invalid(f"{shown} is not a regular file")
        if not created and st.st_uid != WORK_UID:
            # Not one the kernel user made (or could have): never write over it.
            raise invalid(f"{shown} is not the session's own file")
        os.fchown(fd, WORK_UID, WORK_GID)
        os.ftruncate(fd, 0)
        content.seek(0)
        while chunk := content.read(256 * 1024):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
    except OSError as exc:
        raise invalid(f"cannot write {shown}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _open_target(parent: int, name: str, shown: str) -> tuple[int, bool]:
    """Open upload target `name` for writing: ``(fd, made by us)``. Never follows a link;
    O_NONBLOCK so that a FIFO planted under this name cannot hang the agent."""
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    for _ in range(8):  # user code may create and remove the name as fast as it likes
        try:
            return os.open(name, flags, dir_fd=parent), False
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
                raise invalid(f"{shown} is not a regular file") from None
            raise invalid(f"cannot write {shown}: {exc.strerror}") from None
        try:
            return os.open(name, flags | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=parent), True
        except FileExistsError:
            continue  # made meanwhile: open what is there now, with the checks above
        except OSError as exc:
            raise invalid(f"cannot write {shown}: {exc.strerror}") from None
    raise invalid(f"cannot write {shown}: it keeps changing")


# -- uploads --------------------------------------------------------------------------------


@attrs.define
class StagedFile:
    parts: list[str]
    content: IO[bytes]
    size: int = 0


@attrs.define
class Upload:
    """One upload in progress: files staged outside the work tree until the commit."""

    upload_id: str
    files: list[StagedFile] = attrs.field(factory=list)
    touched: float = attrs.field(factory=time.monotonic)

    def close(self) -> None:
        for staged in self.files:
            staged.content.close()
        self.files.clear()


class Uploads:
    """The uploads in progress into one kernel's work tree (host path `work_dir`).

    Blocking, like every file operation: the agent runs them in a worker thread.
    """

    def __init__(self, work_dir: Path, staging_dir: Path, *, idle_timeout: float) -> None:
        self.work_dir = work_dir
        self.staging_dir = staging_dir
        #: Seconds an upload may sit untouched before the next one drops it.
        self.idle_timeout = idle_timeout
        self._uploads: dict[str, Upload] = {}
        self._ids = itertools.count(1)

    def close(self) -> None:
        for upload in self._uploads.values():
            upload.close()
        self._uploads.clear()

    def begin(self) -> str:
        now = time.monotonic()
        idle = self.idle_timeout
        for stale in [u for u in self._uploads.values() if now - u.touched > idle]:
            self.drop(stale)
        if len(self._uploads) >= MAX_OPEN_UPLOADS:
            raise FileOpError("too-large", "too many uploads in progress for this session")
        upload = Upload(f"u{next(self._ids)}")
        self._uploads[upload.upload_id] = upload
        return upload.upload_id

    def step(self, upload_id: str, action: Callable[[Upload], T]) -> T:
        """One step of an upload in progress; a step that fails ends the upload."""
        upload = self._uploads.get(upload_id)
        if upload is None:
            raise FileOpError("invalid-path", "no such upload in progress (expired?)")
        upload.touched = time.monotonic()
        try:
            return action(upload)
        except BaseException:
            self.drop(upload)
            raise

    def drop(self, upload: Upload) -> None:
        upload.close()
        self._uploads.pop(upload.upload_id, None)

    def add_file(self, upload: Upload, path: object) -> None:
        if len(upload.files) >= MAX_UPLOAD_FILES:
            raise FileOpError("too-large", f"at most {MAX_UPLOAD_FILES} files per upload")
        parts = split_path(path)
        if not parts:
            raise invalid(f"{path!r} names the work directory itself, not a file")
        self.staging_dir.mkdir(mode=0o700, exist_ok=True)
        # Unnamed (O_TMPFILE where possible) and in an agent-only folder: the kernel
        # never sees staged content, and nothing is left behind if the agent dies.
        content = tempfile.TemporaryFile(dir=self.staging_dir)
        upload.files.append(StagedFile(parts, content))

    def add_data(self, upload: Upload, data: object) -> None:
        if not upload.files:
            raise invalid("data before any file")
        if not isinstance(data, str):
            raise invalid("data must be base64 text")
        chunk = base64.b64decode(data, validate=True)
        staged = upload.files[-1]
        staged.size += len(chunk)
        if staged.size > MAX_UPLOAD_FILE_BYTES:
            raise FileOpError(
                "too-large",
                f"{container_path(staged.parts)}: files must be smaller than 1 MiB",
            )
        staged.content.write(chunk)

    def commit(self, upload: Upload) -> list[str]:
        if not upload.files:
            raise invalid("no files to upload")
        try:
            with open_root(self.work_dir) as root:
                # Every target first: a refused upload must leave nothing behind.
                for staged in upload.files:
                    _check_target(root, staged.parts)
                for staged in upload.files:
                    _write_file(root, staged.parts, staged.content)
        finally:
            self.drop(upload)
        return [container_path(staged.parts) for staged in upload.files]
