"""The built-in ``local`` vfolder host: folders are directories under one root.

Layout: ``<root>/<folder id>/data`` is the folder (what sessions mount, owned by the
kernel user so sessions can write) and ``<root>/<folder id>/staging`` holds uploads in
flight (never mounted, so no session can see or tamper with a half-written file). The
root is mode 0700: only root (the API, the Docker daemon) walks into it.

The API runs as root and sessions can plant symbolic links (to ``/``, to another
tenant's folder) inside a mounted folder at any moment. So no path inside a folder is
ever resolved by the kernel from a string: every access walks component by component
from an open directory descriptor with ``O_NOFOLLOW``, and the final operation is
relative to the parent's descriptor (``*at`` calls). A link is then just an entry that
is not a directory or a regular file.

Caps: the API checks them before its own writes; what holds for writes from inside
sessions depends on the filesystem under the root (`crucible.plugins.storage.
folder_quotas`: project quotas on XFS/ext4, a quota-group limit per subvolume on btrfs,
nothing elsewhere), detected when the host is opened. A write that the filesystem
refuses (EDQUOT, ENOSPC) is `StorageFull`.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import uuid
from collections.abc import AsyncIterable, Callable
from pathlib import Path
from typing import TypeVar

import trio

from crucible import fstree
from crucible.hookspecs.markers import hookimpl
from crucible.hookspecs.storage import (
    EntryNotFound,
    FileEntry,
    FolderLimits,
    HostSettings,
    IsADirectory,
    MountSpec,
    NotADirectory,
    NotAFile,
    QuotaEnforcement,
    RelPath,
    StorageError,
    StorageFull,
    Usage,
)
from crucible.kernels.contract import WORK_GID, WORK_UID
from crucible.plugins.storage.folder_quotas import (
    ROOT_FLAGS,
    PlainFolders,
    detect,
)

_FOLDER_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_STAGING_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: Blocking filesystem calls at once per host (each occupies a worker thread).
_THREADS = 8
T = TypeVar("T")


def _display(path: RelPath) -> str:
    return "/".join(path) or "."


def _chown(fd: int) -> None:
    # Only root can give files away; a non-root manager (a developer's checkout) keeps
    # them, and sessions then cannot modify what the API wrote.
    if os.geteuid() == 0:
        os.fchown(fd, WORK_UID, WORK_GID)


def _walk(root_fd: int, path: RelPath, *, create: bool = False) -> int:
    """A new descriptor of directory `path` below `root_fd`, never crossing a symlink."""
    try:
        return fstree.walk_dirs(root_fd, path, make=_chown if create else None)
    except fstree.NotEntered as exc:
        raise _refused(exc, path[: exc.depth + 1]) from None


def _refused(exc: fstree.NotEntered, path: RelPath) -> OSError | StorageError:
    if exc.step == "open" and exc.errno == errno.ENOENT:
        return EntryNotFound(f"{_display(path)} does not exist", path)
    # ENOTDIR: a file; ELOOP: a symlink (O_NOFOLLOW refuses to traverse it); ENOENT
    # after a mkdir: it was removed again before it could be opened.
    if exc.errno in (errno.ENOTDIR, errno.ELOOP) or (
        exc.step == "reopen" and exc.errno == errno.ENOENT
    ):
        return NotADirectory(f"{_display(path)} is not a directory", path)
    return exc.error


def _entry(name: str, st: os.stat_result) -> FileEntry:
    return FileEntry(
        name=name,
        size=st.st_size,
        mode=st.st_mode,
        mtime=st.st_mtime,
        ctime=st.st_ctime,
        atime=st.st_atime,
    )


class LocalFileReader:
    def __init__(self, fd: int, size: int, limiter: trio.CapacityLimiter) -> None:
        self.fd = fd
        self.size = size
        self._limiter = limiter

    async def read(self, max_bytes: int) -> bytes:
        return await trio.to_thread.run_sync(os.read, self.fd, max_bytes, limiter=self._limiter)

    async def aclose(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class LocalHost:
    """Folders as directories under `root` on a filesystem the agents can see too."""

    def __init__(self, name: str, root: Path, folders: PlainFolders) -> None:
        self.name = name
        self.root = root
        #: How folder directories are made and hold their caps on this filesystem.
        self.folders = folders
        self.quota_enforcement: QuotaEnforcement = folders.enforcement
        self._limiter = trio.CapacityLimiter(_THREADS)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        try:
            return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        except OSError as exc:
            # XFS answers ENOSPC for a full project, ext4 and btrfs EDQUOT.
            if exc.errno in (errno.EDQUOT, errno.ENOSPC):
                raise StorageFull("the folder's storage is full (its quota, or the disk)") from exc
            raise

    def _on_root(self, fn: Callable[[int, str], T], folder_id: str) -> T:
        """`fn(root_fd, folder_id)`: the folder directory's own operations are relative
        to a descriptor of the root, which only root can enter."""
        self._folder(folder_id)  # validates the id
        root_fd = os.open(self.root, ROOT_FLAGS)
        try:
            return fn(root_fd, folder_id)
        finally:
            os.close(root_fd)

    def _folder(self, folder_id: str) -> Path:
        if not _FOLDER_ID_RE.match(folder_id):
            raise ValueError(f"not a folder id: {folder_id!r}")
        return self.root / folder_id

    def _open_data(self, folder_id: str) -> int:
        # The root and the folder directory are ours alone (0700, never mounted), so
        # this path cannot have been altered by a session; `data` itself is the mount.
        try:
            return os.open(self._folder(folder_id) / "data", fstree.DIR_FLAGS)
        except FileNotFoundError:
            raise EntryNotFound("the folder's storage is missing") from None

    # -- folders ---------------------------------------------------------------------------

    def _create_sync(self, folder_id: str) -> None:
        self._on_root(self.folders.make, folder_id)
        folder = self._folder(folder_id)
        try:
            (folder / "staging").mkdir(mode=0o700)
            (folder / "data").mkdir(mode=0o755)
            fd = os.open(folder / "data", fstree.DIR_FLAGS)
            try:
                _chown(fd)
            finally:
                os.close(fd)
        except BaseException:
            # A half-made folder (say, a project id that could not be set) goes again:
            # the core only undoes creations that returned.
            self._on_root(self.folders.remove, folder_id)
            raise

    async def create_folder(self, folder_id: str) -> None:
        await self._run(self._create_sync, folder_id)

    async def delete_folder(self, folder_id: str) -> None:
        await self._run(self._on_root, self.folders.remove, folder_id)

    # -- caps ------------------------------------------------------------------------------

    def _limit_sync(self, folder_id: str, limits: FolderLimits) -> QuotaEnforcement:
        return self._on_root(lambda fd, name: self.folders.limit(fd, name, limits), folder_id)

    async def limit_folder(self, folder_id: str, limits: FolderLimits) -> QuotaEnforcement:
        return await self._run(self._limit_sync, folder_id, limits)

    async def folder_enforcement(self, folder_id: str) -> QuotaEnforcement:
        return await self._run(self._on_root, self.folders.enforced, folder_id)

    # -- reading ---------------------------------------------------------------------------

    def _list_sync(self, folder_id: str, path: RelPath) -> list[FileEntry]:
        root = self._open_data(folder_id)
        try:
            fd = _walk(root, path)
        finally:
            os.close(root)
        try:
            entries = []
            with os.scandir(fd) as it:
                for item in it:
                    try:
                        entries.append(_entry(item.name, item.stat(follow_symlinks=False)))
                    except FileNotFoundError:
                        continue  # deleted while we listed
            return sorted(entries, key=lambda e: e.name)
        finally:
            os.close(fd)

    async def list_files(self, folder_id: str, path: RelPath) -> list[FileEntry]:
        return await self._run(self._list_sync, folder_id, path)

    def _stat_sync(self, folder_id: str, path: RelPath) -> FileEntry | None:
        root = self._open_data(folder_id)
        try:
            if not path:
                return _entry(".", os.fstat(root))
            try:
                parent = _walk(root, path[:-1])
            except (EntryNotFound, NotADirectory):
                return None
        finally:
            os.close(root)
        try:
            return _entry(path[-1], os.stat(path[-1], dir_fd=parent, follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            return None
        finally:
            os.close(parent)

    async def stat(self, folder_id: str, path: RelPath) -> FileEntry | None:
        return await self._run(self._stat_sync, folder_id, path)

    def _open_sync(self, folder_id: str, path: RelPath) -> LocalFileReader:
        if not path:
            raise NotAFile("the folder root is not a file", path)
        root = self._open_data(folder_id)
        try:
            parent = _walk(root, path[:-1])
        finally:
            os.close(root)
        try:
            fd = os.open(path[-1], fstree.READ_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            raise EntryNotFound(f"{_display(path)} does not exist", path) from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
                raise NotAFile(f"{_display(path)} is not a regular file", path) from None
            raise
        finally:
            os.close(parent)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise NotAFile(f"{_display(path)} is not a regular file", path)
        os.set_blocking(fd, True)
        return LocalFileReader(fd, st.st_size, self._limiter)

    async def open_file(self, folder_id: str, path: RelPath) -> LocalFileReader:
        return await self._run(self._open_sync, folder_id, path)

    def _usage_sync(self, folder_id: str) -> Usage:
        counted = self._on_root(self.folders.usage, folder_id)
        if counted is not None:
            return counted
        root = self._open_data(folder_id)
        try:
            # Never enters a link (a session's link to / counts as one entry, not as the
            # host's disk), bounded descriptors, no recursion: crucible.fstree.
            for _ in range(3):
                try:
                    size, count = fstree.tree_usage(root)
                    break
                except fstree.TreeChanged:
                    continue  # a session moved directories meanwhile; walk again
            else:
                raise StorageError("the folder kept changing while its usage was measured")
        finally:
            os.close(root)
        return Usage(size_bytes=size, file_count=count)

    async def usage(self, folder_id: str) -> Usage:
        return await self._run(self._usage_sync, folder_id)

    # -- writing ---------------------------------------------------------------------------

    def _mkdir_sync(self, folder_id: str, path: RelPath) -> None:
        root = self._open_data(folder_id)
        try:
            os.close(_walk(root, path, create=True))
        finally:
            os.close(root)

    async def mkdir(self, folder_id: str, path: RelPath) -> None:
        await self._run(self._mkdir_sync, folder_id, path)

    def _prepare_upload(self, folder_id: str, path: RelPath) -> tuple[int, int, int, str]:
        """Open the target's parent (made if missing), the staging dir and a temp file."""
        if not path:
            raise NotAFile("the folder root is not a file", path)
        root = self._open_data(folder_id)
        try:
            parent = _walk(root, path[:-1], create=True)
        finally:
            os.close(root)
        try:
            try:
                st = os.stat(path[-1], dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                if not stat.S_ISREG(st.st_mode):
                    raise NotAFile(f"{_display(path)} exists and is not a regular file", path)
            staging = os.open(self._folder(folder_id) / "staging", fstree.DIR_FLAGS)
            try:
                temp_name = f"upload-{uuid.uuid4().hex}"
                fd = os.open(temp_name, _STAGING_FLAGS, 0o644, dir_fd=staging)
            except BaseException:
                os.close(staging)
                raise
        except BaseException:
            os.close(parent)
            raise
        return parent, staging, fd, temp_name

    def _publish(self, parent: int, staging: int, fd: int, temp_name: str, name: str) -> None:
        _chown(fd)
        os.close(fd)
        try:
            os.rename(temp_name, name, src_dir_fd=staging, dst_dir_fd=parent)
        except IsADirectoryError:
            # A directory appeared at the target while the data streamed in.
            raise NotAFile(f"{name} is a directory") from None

    async def upload_file(self, folder_id: str, path: RelPath, chunks: AsyncIterable[bytes]) -> int:
        parent, staging, fd, temp_name = await self._run(self._prepare_upload, folder_id, path)
        written = 0
        published = False
        try:
            async for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    n = await self._run(os.write, fd, view)
                    view = view[n:]
                    written += n
            await self._run(self._publish, parent, staging, fd, temp_name, path[-1])
            published = True
            fd = -1
            return written
        finally:
            with trio.CancelScope(shield=True):
                await self._run(_discard, parent, staging, fd, temp_name, published)

    def _delete_files_sync(self, folder_id: str, paths: list[RelPath], recursive: bool) -> None:
        root = self._open_data(folder_id)
        try:
            targets: list[tuple[int, str, bool]] = []
            try:
                for path in paths:
                    if not path:
                        raise IsADirectory("the folder root cannot be deleted", path)
                    try:
                        parent = _walk(root, path[:-1])
                    except (EntryNotFound, NotADirectory):
                        continue  # nothing there: nothing to delete
                    try:
                        st = os.stat(path[-1], dir_fd=parent, follow_symlinks=False)
                    except FileNotFoundError:
                        os.close(parent)
                        continue
                    is_dir = stat.S_ISDIR(st.st_mode)
                    targets.append((parent, path[-1], is_dir))
                    if is_dir and not recursive:
                        raise IsADirectory(f"{_display(path)} is a directory (use recursive)", path)
                for parent, name, is_dir in targets:
                    try:
                        if is_dir:
                            fstree.remove_tree(parent, name)
                        else:
                            os.unlink(name, dir_fd=parent)
                    except FileNotFoundError:
                        pass
                    except IsADirectoryError:
                        # Replaced by a directory after we looked: only with recursive.
                        if recursive:
                            fstree.remove_tree(parent, name)
            finally:
                for parent, _, _ in targets:
                    os.close(parent)
        finally:
            os.close(root)

    async def delete_files(self, folder_id: str, paths: list[RelPath], *, recursive: bool) -> None:
        await self._run(self._delete_files_sync, folder_id, paths, recursive)

    def mount_spec(self, folder_id: str, *, read_only: bool) -> MountSpec:
        return MountSpec(host_path=str(self._folder(folder_id) / "data"), read_only=read_only)


def _discard(parent: int, staging: int, fd: int, temp_name: str, published: bool) -> None:
    if fd >= 0:
        os.close(fd)
    if not published:
        try:
            os.unlink(temp_name, dir_fd=staging)
        except FileNotFoundError:
            pass
    os.close(staging)
    os.close(parent)


class LocalBackend:
    type = "local"

    def open_host(self, settings: HostSettings) -> LocalHost:
        if settings.options:
            raise ValueError(f"the local plugin takes no options: {sorted(settings.options)}")
        root = Path(settings.path).expanduser()
        if not root.is_absolute():
            raise ValueError(f"path must be absolute: {settings.path!r}")
        try:
            # Made now, not with the first folder: what it can enforce is read from it.
            root.mkdir(parents=True, exist_ok=True)
            os.chmod(root, 0o700)
            folders = detect(root)
        except OSError as exc:
            raise ValueError(f"cannot use {root}: {exc}") from exc
        return LocalHost(settings.name, root, folders)


@hookimpl
def crucible_storage_backend() -> LocalBackend:
    return LocalBackend()
