"""What leaves a kernel's work tree: directory listings and download archives.

Both read through descriptors from the work root (`crucible.agent.files.paths`): a
link is never followed. An archive is refused as a whole, before any byte is sent,
when a path is missing or the content is over `MAX_ARCHIVE_BYTES`: the same walk runs
first without reading (`dry_run`), then for real.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Iterator
from typing import Final

from crucible.agent.files.paths import (
    FileOpError,
    container_path,
    not_found,
    split_path,
    subdir_fd,
    walk,
)
from crucible.fstree import READ_FLAGS
from crucible.protocol.file_calls import ArchiveEntry, FileEntry, FileListing

#: The uncompressed content one download archive may carry. The legacy server capped an
#: archive at 1 MiB; a little more lets a file of the largest uploadable size come back.
MAX_ARCHIVE_BYTES: Final = 4 * 1024 * 1024
#: Entries one listing returns at most (sorted by name): a listing is one message.
MAX_LIST_ENTRIES: Final = 5000
#: Directory levels one download archive may hold: the walk keeps a descriptor per
#: level, and user code can nest directories thousands deep.
MAX_ARCHIVE_DEPTH: Final = 64


def list_dir(root_fd: int, path: str) -> FileListing:
    """The entries of a directory, as spec 4.10 describes them (``lstat``, no links)."""
    parts = split_path(path)
    fd = walk(root_fd, parts)
    try:
        names = sorted(os.listdir(fd))[:MAX_LIST_ENTRIES]
        entries = []
        for name in names:
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed while we looked
            entries.append(
                FileEntry(
                    filename=name,
                    size=st.st_size,
                    mode=stat.filemode(st.st_mode),
                    mtime=st.st_mtime,
                    ctime=st.st_ctime,
                    atime=st.st_atime,
                )
            )
    finally:
        os.close(fd)
    return FileListing(container_path(parts), tuple(entries))


def archive(root_fd: int, path: str, *, dry_run: bool) -> tuple[ArchiveEntry, bytes]:
    """`path` as an uncompressed tar archive (a directory with its tree); with
    `dry_run`, only checked and measured (the bytes are empty)."""
    parts = split_path(path)
    parent = walk(root_fd, parts[:-1])
    name = parts[-1] if parts else ""
    shown = container_path(parts)
    buffer = io.BytesIO()
    try:
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            writer = _ArchiveWriter(tar, shown, dry_run=dry_run)
            if not parts:
                # The work directory itself: its tree under the name "work".
                fd = os.dup(parent)
                try:
                    writer.add_tree(fd, "work", shown)
                finally:
                    os.close(fd)
            else:
                writer.add_entry(parent, name, name, shown, top=True)
    finally:
        os.close(parent)
    return ArchiveEntry(shown, name or "work", writer.used), buffer.getvalue()


class _ArchiveWriter:
    """One archive being written (or, dry, only measured) within `MAX_ARCHIVE_BYTES`.

    `shown` is the path the client asked for, named when the archive is too large.
    """

    def __init__(self, tar: tarfile.TarFile, shown: str, *, dry_run: bool) -> None:
        self._tar = tar
        self._shown = shown
        self._dry_run = dry_run
        self.limit = MAX_ARCHIVE_BYTES
        self.used = 0

    def take(self, size: int) -> None:
        self.used += size
        if self.used > self.limit:
            raise FileOpError(
                "too-large",
                f"{self._shown}: more than {self.limit // (1024 * 1024)} MiB to download",
            )

    def add_entry(
        self, parent_fd: int, name: str, arcname: str, shown: str, *, top: bool = False
    ) -> None:
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            if top:
                raise not_found(f"{shown}: no such file or directory") from None
            return  # removed while we archived the tree
        if stat.S_ISLNK(st.st_mode):
            if top:
                raise not_found(f"{shown} is a symbolic link; links are not followed")
            # Inside a tree a link is left out, target unread. Shipping it as a link would
            # plant it on the client, where the client's extraction of a later archive
            # (the 18.12 client extracts without filters) could write through it.
            return
        if stat.S_ISDIR(st.st_mode):
            fd = subdir_fd(parent_fd, name, shown)
            try:
                self.add_tree(fd, arcname, shown)
            finally:
                os.close(fd)
        elif stat.S_ISREG(st.st_mode):
            self.add_file(parent_fd, name, arcname, shown)
        elif top:
            raise not_found(f"{shown} is not a regular file or directory")
        # Sockets, FIFOs and devices inside a tree are skipped.

    def add_tree(self, fd: int, arcname: str, shown: str) -> None:
        if arcname.count("/") >= MAX_ARCHIVE_DEPTH:
            raise FileOpError(
                "too-large", f"{shown}: more than {MAX_ARCHIVE_DEPTH} directory levels to download"
            )
        st = os.fstat(fd)
        info = _tarinfo(arcname, st)
        info.type = tarfile.DIRTYPE
        self.take(512)
        if not self._dry_run:
            self._tar.addfile(info)
        for child in sorted(os.listdir(fd)):
            self.add_entry(fd, child, f"{arcname}/{child}", f"{shown}/{child}")

    def add_file(self, parent_fd: int, name: str, arcname: str, shown: str) -> None:
        try:
            fd = os.open(name, READ_FLAGS, dir_fd=parent_fd)
        except FileNotFoundError:
            raise not_found(f"{shown}: no such file or directory") from None
        except OSError as exc:
            raise not_found(f"{shown}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise not_found(f"{shown} is not a regular file")
            self.take(st.st_size + 512)
            if self._dry_run:
                return
            # Read what is there now (it may change under us) and archive exactly that.
            data = b"".join(self._read_all(fd))
        finally:
            os.close(fd)
        info = _tarinfo(arcname, st)
        info.size = len(data)
        self._tar.addfile(info, io.BytesIO(data))

    def _read_all(self, fd: int) -> Iterator[bytes]:
        total = 0
        while chunk := os.read(fd, 256 * 1024):
            total += len(chunk)
            if total > self.limit:
                self.take(total)  # raises: the file grew past the limit meanwhile
            yield chunk


def _tarinfo(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    # Permission bits only: no set-id bits travel to the client.
    info.mode = stat.S_IMODE(st.st_mode) & 0o777
    info.mtime = int(st.st_mtime)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = "work"
    return info
