"""Session files: upload into, list and download from a kernel's ``/home/work`` (spec 4.9-4.11).

The agent runs as root on the host and reaches ``/home/work`` directly, as the host
directory ``<kernel_dir>/work``. User code owns that tree and can plant symbolic links in
it at any moment, including between a check and a use. So no path is ever resolved by
the kernel's path walk: every operation starts from a file descriptor of the work root
and walks one component at a time with ``O_NOFOLLOW`` relative to the previous
directory's descriptor. A symbolic link anywhere on a path is refused, never followed;
no ``realpath`` result is ever opened. Whatever the agent creates is handed to the
kernel user (uid/gid 1000) through its descriptor.

Uploads come in several calls (the manager streams a request's parts through): the
content is staged in unnamed temporary files outside the work tree, and only a commit
that finds every target path acceptable writes anything, so a refused upload leaves
``/home/work`` untouched.

Errors are `FileOpError` with a `kind` the manager maps to a status: ``invalid-path``
and ``too-large`` (400), ``file-not-found`` (404); listings and downloads answer 404 for
``invalid-path`` too (spec 4.10/4.11).

The agent calls that reach this module, one per step of an upload or a download, and
their replies, are in `crucible.protocol.file_calls`; `FileService.call` runs them.
"""

from __future__ import annotations

import base64
import errno
import io
import itertools
import os
import stat
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Final, TypeVar

import attrs
import trio

from crucible import fstree
from crucible.kernels.contract import WORK_DIR, WORK_GID, WORK_UID
from crucible.kernels.limits import (
    MAX_DOWNLOAD_FILES,
    MAX_NAME_BYTES,
    MAX_PATH_BYTES,
    MAX_UPLOAD_FILE_BYTES,
    MAX_UPLOAD_FILES,
)
from crucible.protocol.calls import Done
from crucible.protocol.file_calls import (
    Archive,
    ArchiveEntry,
    DownloadArchive,
    DownloadCheck,
    DownloadChecked,
    FileCall,
    FileEntry,
    FileListing,
    ListFiles,
    UploadAbort,
    UploadBegin,
    UploadBegun,
    UploadCommit,
    UploadCommitted,
    UploadData,
    UploadFile,
)

T = TypeVar("T")

#: The uncompressed content one download archive may carry. The legacy server capped an
#: archive at 1 MiB; a little more lets a file of the largest uploadable size come back.
MAX_ARCHIVE_BYTES: Final = 4 * 1024 * 1024
#: Entries one listing returns at most (sorted by name): a listing is one message.
MAX_LIST_ENTRIES: Final = 5000
#: Directory levels one download archive may hold: the walk keeps a descriptor per
#: level, and user code can nest directories thousands deep.
MAX_ARCHIVE_DEPTH: Final = 64
#: Uploads a kernel may have open at once (how long one may sit idle is
#: ``agent.upload_idle_timeout``).
MAX_OPEN_UPLOADS: Final = 8


class FileOpError(Exception):
    """A file operation refused or failed; `kind` decides the API status."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _invalid(message: str) -> FileOpError:
    return FileOpError("invalid-path", message)


def _not_found(message: str) -> FileOpError:
    return FileOpError("file-not-found", message)


# -- paths ----------------------------------------------------------------------------------


def split_path(path: object) -> list[str]:
    """The components of `path` below the work root, checked but not resolved.

    Relative paths are relative to /home/work; absolute ones must lie under it. ``.``
    and empty components vanish; ``..`` removes the previous component and may never
    climb above the root (no symlink is ever followed, so this lexical reading is also
    what the walk does). NUL, CR and LF are refused anywhere, as are over-long names.
    """
    if not isinstance(path, str):
        raise _invalid("a path must be a string")
    if "\x00" in path:
        raise _invalid("a path must not contain NUL characters")
    if "\n" in path or "\r" in path:
        raise _invalid("a path must not contain line breaks")
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise _invalid(f"a path must be at most {MAX_PATH_BYTES} bytes long")
    rest = path
    if path.startswith("/"):
        if path != WORK_DIR and not path.startswith(WORK_DIR + "/"):
            raise _invalid(f"{path!r} is outside {WORK_DIR}")
        rest = path[len(WORK_DIR) :]
    parts: list[str] = []
    for name in rest.split("/"):
        if name in ("", "."):
            continue
        if name == "..":
            if not parts:
                raise _invalid(f"{path!r} leads outside {WORK_DIR}")
            parts.pop()
            continue
        if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise _invalid(f"a file name must be at most {MAX_NAME_BYTES} bytes long")
        parts.append(name)
    return parts


def container_path(parts: list[str]) -> str:
    return "/".join([WORK_DIR, *parts])


def _refused(exc: fstree.NotEntered, shown: str) -> FileOpError:
    """Why the directory `shown` could not be entered, from what the walk saw there."""
    if exc.step == "mkdir":
        return _invalid(f"cannot create {shown}: {exc.strerror}")
    if exc.errno not in fstree.REFUSED_ERRNOS:
        return _invalid(f"{shown}: {exc.strerror}")
    if exc.found_error is not None:
        return _invalid(f"{shown}: {exc.found_error.strerror}")
    if exc.found is None:
        return _not_found(f"{shown}: no such file or directory")
    if stat.S_ISLNK(exc.found.st_mode):
        return _invalid(f"{shown} is a symbolic link; links are not followed")
    if not stat.S_ISDIR(exc.found.st_mode):
        return _invalid(f"{shown} is not a directory")
    return _invalid(f"{shown} cannot be opened")


def _open_dir(parent_fd: int, name: str, shown: str) -> int:
    try:
        return fstree.open_dir(parent_fd, name)
    except fstree.NotEntered as exc:
        raise _refused(exc, shown) from None


def walk(root_fd: int, parts: list[str], *, create: bool = False, owned: bool = False) -> int:
    """A new descriptor of the directory `parts` below `root_fd`, without following links.

    With `create` (uploads), missing directories are made (owned by the kernel user);
    with `create` or `owned`, every directory on the way must belong to the kernel user.
    The caller closes the returned descriptor.
    """

    def check_owned(fd: int, depth: int) -> None:
        # Docker makes the mount points of vfolders (mounted over /home/work/NAME) in the
        # work tree as root: a file written there would hide under the mount. Uploads go
        # only where the kernel user could have written itself.
        if os.fstat(fd).st_uid != WORK_UID:
            shown = container_path(parts[: depth + 1])
            raise _invalid(f"{shown} is not the session's own folder (a vfolder mount point?)")

    try:
        return fstree.walk_dirs(
            root_fd,
            parts,
            make=_give_to_kernel if create else None,
            entered=check_owned if create or owned else None,
        )
    except fstree.NotEntered as exc:
        refusal = _refused(exc, container_path(parts[: exc.depth + 1]))
        if create and refusal.kind == "file-not-found":
            # A directory an upload just made (or found) vanished before it could be
            # entered: the session is moving things under it. That is a bad path for
            # the upload (400), not a missing file (404).
            refusal = _invalid(f"{refusal}; the folder changed while the upload went in")
        raise refusal from None


def _give_to_kernel(fd: int) -> None:
    os.fchown(fd, WORK_UID, WORK_GID)


def _check_target(root_fd: int, parts: list[str]) -> None:
    """Refuse an upload target that could not be written: called for every file first."""
    shown = container_path(parts)
    if not parts:
        raise _invalid(f"{shown} is a directory, not a file name")
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
            raise _invalid(f"{shown} is a symbolic link; links are not followed")
        if not stat.S_ISREG(st.st_mode):
            raise _invalid(f"{shown} exists and is not a regular file")
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
            raise _invalid(f"{shown} is not a regular file")
        if not created and st.st_uid != WORK_UID:
            # Not one the kernel user made (or could have): never write over it.
            raise _invalid(f"{shown} is not the session's own file")
        os.fchown(fd, WORK_UID, WORK_GID)
        os.ftruncate(fd, 0)
        content.seek(0)
        while chunk := content.read(256 * 1024):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
    except OSError as exc:
        raise _invalid(f"cannot write {shown}: {exc.strerror}") from None
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
                raise _invalid(f"{shown} is not a regular file") from None
            raise _invalid(f"cannot write {shown}: {exc.strerror}") from None
        try:
            return os.open(name, flags | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=parent), True
        except FileExistsError:
            continue  # made meanwhile: open what is there now, with the checks above
        except OSError as exc:
            raise _invalid(f"cannot write {shown}: {exc.strerror}") from None
    raise _invalid(f"cannot write {shown}: it keeps changing")


# -- uploads --------------------------------------------------------------------------------


@attrs.define
class _StagedFile:
    parts: list[str]
    content: IO[bytes]
    size: int = 0


@attrs.define
class Upload:
    """One upload in progress: files staged outside the work tree until the commit."""

    upload_id: str
    files: list[_StagedFile] = attrs.field(factory=list)
    touched: float = attrs.field(factory=time.monotonic)

    def close(self) -> None:
        for staged in self.files:
            staged.content.close()
        self.files.clear()


class KernelFiles:
    """The file operations on one kernel's work tree (host path `work_dir`).

    Every method is blocking; the agent runs them in a worker thread.
    """

    def __init__(self, work_dir: Path, staging_dir: Path, *, upload_idle_timeout: float) -> None:
        self.work_dir = work_dir
        self.staging_dir = staging_dir
        #: Seconds an upload may sit untouched before the next one drops it.
        self.upload_idle_timeout = upload_idle_timeout
        self._uploads: dict[str, Upload] = {}
        self._ids = itertools.count(1)

    def _root(self) -> int:
        return os.open(self.work_dir, fstree.DIR_FLAGS)

    def close(self) -> None:
        for upload in self._uploads.values():
            upload.close()
        self._uploads.clear()

    # -- uploads ------------------------------------------------------------------------

    def upload_begin(self, call: UploadBegin) -> UploadBegun:
        return UploadBegun(self._begin())

    def upload_file(self, call: UploadFile) -> Done:
        self._step(call.upload_id, lambda upload: self._add_file(upload, call.path))
        return Done()

    def upload_data(self, call: UploadData) -> Done:
        self._step(call.upload_id, lambda upload: self._add_data(upload, call.data))
        return Done()

    def upload_commit(self, call: UploadCommit) -> UploadCommitted:
        return UploadCommitted(tuple(self._step(call.upload_id, self._commit)))

    def upload_abort(self, call: UploadAbort) -> Done:
        self._step(call.upload_id, self._drop)
        return Done()

    def _step(self, upload_id: str, action: Callable[[Upload], T]) -> T:
        """One step of an upload in progress; a step that fails ends the upload."""
        upload = self._uploads.get(upload_id)
        if upload is None:
            raise FileOpError("invalid-path", "no such upload in progress (expired?)")
        upload.touched = time.monotonic()
        try:
            return action(upload)
        except BaseException:
            self._drop(upload)
            raise

    def _begin(self) -> str:
        now = time.monotonic()
        idle = self.upload_idle_timeout
        for stale in [u for u in self._uploads.values() if now - u.touched > idle]:
            self._drop(stale)
        if len(self._uploads) >= MAX_OPEN_UPLOADS:
            raise FileOpError("too-large", "too many uploads in progress for this session")
        upload = Upload(f"u{next(self._ids)}")
        self._uploads[upload.upload_id] = upload
        return upload.upload_id

    def _drop(self, upload: Upload) -> None:
        upload.close()
        self._uploads.pop(upload.upload_id, None)

    def _add_file(self, upload: Upload, path: object) -> None:
        if len(upload.files) >= MAX_UPLOAD_FILES:
            raise FileOpError("too-large", f"at most {MAX_UPLOAD_FILES} files per upload")
        parts = split_path(path)
        if not parts:
            raise _invalid(f"{path!r} names the work directory itself, not a file")
        self.staging_dir.mkdir(mode=0o700, exist_ok=True)
        # Unnamed (O_TMPFILE where possible) and in an agent-only folder: the kernel
        # never sees staged content, and nothing is left behind if the agent dies.
        content = tempfile.TemporaryFile(dir=self.staging_dir)
        upload.files.append(_StagedFile(parts, content))

    def _add_data(self, upload: Upload, data: object) -> None:
        if not upload.files:
            raise _invalid("data before any file")
        if not isinstance(data, str):
            raise _invalid("data must be base64 text")
        chunk = base64.b64decode(data, validate=True)
        staged = upload.files[-1]
        staged.size += len(chunk)
        if staged.size > MAX_UPLOAD_FILE_BYTES:
            raise FileOpError(
                "too-large",
                f"{container_path(staged.parts)}: files must be smaller than 1 MiB",
            )
        staged.content.write(chunk)

    def _commit(self, upload: Upload) -> list[str]:
        if not upload.files:
            raise _invalid("no files to upload")
        root = self._root()
        try:
            # Every target first: a refused upload must leave nothing behind.
            for staged in upload.files:
                _check_target(root, staged.parts)
            for staged in upload.files:
                _write_file(root, staged.parts, staged.content)
        finally:
            os.close(root)
            self._drop(upload)
        return [container_path(staged.parts) for staged in upload.files]

    # -- listing ------------------------------------------------------------------------

    def list_dir(self, call: ListFiles) -> FileListing:
        """The entries of a directory, as spec 4.10 describes them (``lstat``, no links)."""
        parts = split_path(call.path or ".")
        root = self._root()
        try:
            fd = walk(root, parts)
        finally:
            os.close(root)
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

    # -- downloads ----------------------------------------------------------------------

    def check_download(self, call: DownloadCheck) -> DownloadChecked:
        """Refuse a download before any byte is sent: every path exists and fits."""
        paths = call.paths
        if not paths:
            raise _invalid("'files' must be a non-empty list of paths")
        if len(paths) > MAX_DOWNLOAD_FILES:
            raise FileOpError("too-large", f"at most {MAX_DOWNLOAD_FILES} files per download")
        return DownloadChecked(tuple(self._archive(path, dry_run=True)[0] for path in paths))

    def archive(self, call: DownloadArchive) -> Archive:
        """One path as an uncompressed tar archive (a directory with its tree)."""
        entry, data = self._archive(call.path, dry_run=False)
        encoded = base64.b64encode(data).decode("ascii")
        return Archive(path=entry.path, name=entry.name, bytes=entry.bytes, data=encoded)

    def _archive(self, path: str, *, dry_run: bool) -> tuple[ArchiveEntry, bytes]:
        parts = split_path(path)
        root = self._root()
        try:
            parent = walk(root, parts[:-1])
        finally:
            os.close(root)
        name = parts[-1] if parts else ""
        shown = container_path(parts)
        buffer = io.BytesIO()
        budget = _Budget(MAX_ARCHIVE_BYTES, shown)
        try:
            with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
                if not parts:
                    # The work directory itself: its tree under the name "work".
                    fd = os.dup(parent)
                    try:
                        _add_tree(tar, fd, "work", shown, budget, dry_run)
                    finally:
                        os.close(fd)
                else:
                    _add_entry(tar, parent, name, name, shown, budget, dry_run, top=True)
        finally:
            os.close(parent)
        return ArchiveEntry(shown, name or "work", budget.used), buffer.getvalue()


@attrs.define
class _Budget:
    limit: int
    shown: str
    used: int = 0

    def take(self, size: int) -> None:
        self.used += size
        if self.used > self.limit:
            raise FileOpError(
                "too-large",
                f"{self.shown}: more than {self.limit // (1024 * 1024)} MiB to download",
            )


def _tarinfo(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    # Permission bits only: no set-id bits travel to the client.
    info.mode = stat.S_IMODE(st.st_mode) & 0o777
    info.mtime = int(st.st_mtime)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = "work"
    return info


def _add_entry(
    tar: tarfile.TarFile,
    parent_fd: int,
    name: str,
    arcname: str,
    shown: str,
    budget: _Budget,
    dry_run: bool,
    *,
    top: bool = False,
) -> None:
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        if top:
            raise _not_found(f"{shown}: no such file or directory") from None
        return  # removed while we archived the tree
    if stat.S_ISLNK(st.st_mode):
        if top:
            raise _not_found(f"{shown} is a symbolic link; links are not followed")
        # Inside a tree a link is left out, target unread. Shipping it as a link would
        # plant it on the client, where the client's extraction of a later archive
        # (the 18.12 client extracts without filters) could write through it.
        return
    if stat.S_ISDIR(st.st_mode):
        fd = _open_dir(parent_fd, name, shown)
        try:
            _add_tree(tar, fd, arcname, shown, budget, dry_run)
        finally:
            os.close(fd)
    elif stat.S_ISREG(st.st_mode):
        _add_file(tar, parent_fd, name, arcname, shown, budget, dry_run)
    elif top:
        raise _not_found(f"{shown} is not a regular file or directory")
    # Sockets, FIFOs and devices inside a tree are skipped.


def _add_tree(
    tar: tarfile.TarFile, fd: int, arcname: str, shown: str, budget: _Budget, dry_run: bool
) -> None:
    if arcname.count("/") >= MAX_ARCHIVE_DEPTH:
        raise FileOpError(
            "too-large", f"{shown}: more than {MAX_ARCHIVE_DEPTH} directory levels to download"
        )
    st = os.fstat(fd)
    info = _tarinfo(arcname, st)
    info.type = tarfile.DIRTYPE
    budget.take(512)
    if not dry_run:
        tar.addfile(info)
    for child in sorted(os.listdir(fd)):
        _add_entry(tar, fd, child, f"{arcname}/{child}", f"{shown}/{child}", budget, dry_run)


def _add_file(
    tar: tarfile.TarFile,
    parent_fd: int,
    name: str,
    arcname: str,
    shown: str,
    budget: _Budget,
    dry_run: bool,
) -> None:
    try:
        fd = os.open(name, fstree.READ_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        raise _not_found(f"{shown}: no such file or directory") from None
    except OSError as exc:
        raise _not_found(f"{shown}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_found(f"{shown} is not a regular file")
        budget.take(st.st_size + 512)
        if dry_run:
            return
        # Read what is there now (it may change under us) and archive exactly that.
        data = b"".join(_read_all(fd, budget))
    finally:
        os.close(fd)
    info = _tarinfo(arcname, st)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _read_all(fd: int, budget: _Budget) -> Iterator[bytes]:
    total = 0
    while chunk := os.read(fd, 256 * 1024):
        total += len(chunk)
        if total > budget.limit:
            budget.take(total)  # raises: the file grew past the limit meanwhile
        yield chunk


# -- the agent's side -----------------------------------------------------------------------


class FileService:
    """Every kernel's `KernelFiles`, and the file calls on them.

    The calls run in worker threads (the file system calls block), one at a time per
    kernel, so an upload's steps and a listing never interleave on one tree.
    """

    def __init__(self, *, upload_idle_timeout: float) -> None:
        self._kernels: dict[str, tuple[KernelFiles, trio.Lock]] = {}
        self._upload_idle_timeout = upload_idle_timeout

    def forget(self, live_kernel_ids: set[str]) -> None:
        """Drop the state (staged uploads) of kernels that are gone."""
        for kernel_id in list(self._kernels):
            if kernel_id not in live_kernel_ids:
                self._kernels.pop(kernel_id)[0].close()

    async def call(self, kernel_id: str, kernel_dir: Path, call: FileCall) -> object:
        """Run a file call on a kernel; returns the call's reply."""
        entry = self._kernels.get(kernel_id)
        if entry is None:
            files = KernelFiles(
                kernel_dir / "work",
                kernel_dir / "staging",
                upload_idle_timeout=self._upload_idle_timeout,
            )
            entry = (files, trio.Lock())
            self._kernels[kernel_id] = entry
        files, lock = entry
        async with lock:
            return await trio.to_thread.run_sync(_OPERATIONS[type(call)], files, call)


#: The `KernelFiles` method that answers each file call.
_OPERATIONS: dict[type[FileCall], Callable[[KernelFiles, Any], object]] = {
    UploadBegin: KernelFiles.upload_begin,
    UploadFile: KernelFiles.upload_file,
    UploadData: KernelFiles.upload_data,
    UploadCommit: KernelFiles.upload_commit,
    UploadAbort: KernelFiles.upload_abort,
    ListFiles: KernelFiles.list_dir,
    DownloadCheck: KernelFiles.check_download,
    DownloadArchive: KernelFiles.archive,
}
