"""Storage plugins: the vfolder hosts (spec 6) behind ``/folders`` and session mounts.

Entry-point group ``crucible.storage``. A plugin module implements one hook,
`crucible_storage_backend`, returning a `StorageBackend`: a named *type* (what a
sysadmin writes in ``[storage.hosts.NAME] type = "..."``) that opens a `VFolderHost`
for each configured host of that type. The core does everything else: names,
ownership, permissions, invitations, quotas and path validation. A host only stores
bytes under opaque folder ids.

Contract of every `VFolderHost` method:

* ``folder_id`` is 32 lower-case hex characters; the core created it with
  `create_folder` before any other call.
* ``path`` is a `RelPath`: a tuple of already validated components (never empty
  strings, ``.``, ``..``, NUL or ``/``); ``()`` is the folder's root. A host must still
  never follow a symbolic link found inside a folder: sessions mount folders and can
  plant links anywhere in them at any moment.
* Errors are the exceptions below (`EntryNotFound`, `NotADirectory`, `NotAFile`,
  `IsADirectory`); the core turns them into problem responses. Anything else is a 500.
* Methods are async and must not block the event loop (run blocking I/O in
  ``trio.to_thread.run_sync``).

Quotas are checked by the core *before* it hands data over (it calls `usage` and
`stat`); a host enforces one thing itself: `upload_file` publishes the file only after
the data iterator is exhausted, so a refused or broken upload leaves nothing behind.

Those checks cover the API's own writes only: a session that mounts a folder writes to
it directly. A host whose storage can hold a cap against every writer implements the
optional `QuotaEnforcingHost` too (the core finds it with ``isinstance``): the core
hands it each folder's caps right after `create_folder` (and again at every start), and
asks it what holds for a folder when it reports the folder's info. A host without it is
reported as enforcing nothing inside sessions. A write the storage refuses because a
cap (or the disk) is full raises `StorageFull`; the core answers ``412
quota-exceeded``.

A host that holds something to release (connections, threads) implements the optional
`ClosableHost` as well: the manager calls its `aclose` once, when it stops.

Example: an in-memory host (``tests/testlib/memory_storage.py`` is a complete one)::

    from crucible.hookspecs.markers import hookimpl
    from crucible.hookspecs.storage import HostSettings, NotMountable

    class MemoryBackend:
        type = "memory"

        def open_host(self, settings: HostSettings) -> "MemoryHost":
            return MemoryHost(settings.name)

    class MemoryHost:
        def __init__(self, name):
            self.name, self.folders = name, {}

        async def create_folder(self, folder_id):
            self.folders[folder_id] = {}

        async def upload_file(self, folder_id, path, chunks):
            data = b"".join([chunk async for chunk in chunks])  # staged in memory
            self.folders[folder_id][path] = data                 # published at the end
            return len(data)

        def mount_spec(self, folder_id, *, read_only):
            raise NotMountable("memory folders cannot be mounted into sessions")

        ...  # delete_folder, list_files, stat, open_file, mkdir, delete_files, usage

    @hookimpl
    def crucible_storage_backend():
        return MemoryBackend()

registered under ``crucible.storage`` in the plugin's pyproject.toml (see
`crucible.hookspecs`).
"""

from __future__ import annotations

import stat
from collections.abc import AsyncIterable, Mapping
from typing import Any, Final, Literal, Protocol, runtime_checkable

import attrs

from crucible.hookspecs.markers import hookspec

#: A validated path inside a folder, as components; ``()`` is the folder root.
RelPath = tuple[str, ...]


class StorageError(Exception):
    """Base of the errors a host reports about a path; `path` is the offending one."""

    def __init__(self, message: str, path: RelPath = ()) -> None:
        super().__init__(message)
        self.path = path


class EntryNotFound(StorageError):
    """The path (or one of its parents) does not exist."""


class NotADirectory(StorageError):
    """A component that must be a directory is something else (a file, a symlink...)."""


class NotAFile(StorageError):
    """The path must be a regular file and is not (a directory, a symlink, a FIFO...)."""


class IsADirectory(StorageError):
    """A directory was named where `recursive` was not given."""


class NotMountable(StorageError):
    """This host's folders cannot be mounted into sessions."""


class StorageFull(StorageError):
    """The storage refused a write: the folder's cap there (or the whole disk) is full."""


@attrs.frozen
class FileEntry:
    """One directory entry (spec 4.10's file entry, before formatting)."""

    name: str
    size: int
    #: ``st_mode`` bits (type and permissions), as `os.stat` reports them.
    mode: int
    mtime: float
    ctime: float
    atime: float

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)


@attrs.frozen
class Usage:
    """What a folder holds now: bytes of regular files, and entries of every kind.

    A host whose storage accounts space itself may answer with that accounting instead
    (the space the folder takes, in blocks), since its limits are held against it.
    """

    size_bytes: int
    file_count: int


@attrs.frozen
class MountSpec:
    """How an agent bind-mounts a folder: a host path that exists on the agent's host."""

    host_path: str
    read_only: bool


#: Who holds a cap: the storage itself, for every writer (sessions included) ...
BY_FILESYSTEM: Final = "filesystem"
#: ... or only the core's checks before the API's own writes (sessions can write past it).
BY_API: Final = "api"
Enforcer = Literal["filesystem", "api"]


@attrs.frozen
class QuotaEnforcement:
    """Where a folder's two caps (`size`: bytes, `files`: entries) are enforced."""

    size: Enforcer
    files: Enforcer
    #: Why, naming the storage (e.g. "/srv/vfolders is on btrfs with quotas on; btrfs
    #: cannot limit a number of files"): for operators, so it must say what to change.
    reason: str

    @classmethod
    def api_only(cls, reason: str) -> QuotaEnforcement:
        return cls(size=BY_API, files=BY_API, reason=reason)

    @property
    def in_sessions(self) -> bool:
        """Whether both caps hold for writes from inside sessions."""
        return self.size == BY_FILESYSTEM and self.files == BY_FILESYSTEM

    def summary(self) -> str:
        """One sentence on what a session can and cannot exceed, then the reason."""
        size_held = self.size == BY_FILESYSTEM
        files_held = self.files == BY_FILESYSTEM
        if size_held and files_held:
            what = "size and file count are enforced by the filesystem, in sessions too"
        elif size_held or files_held:
            held, loose = ("size", "file count") if size_held else ("file count", "size")
            what = (
                f"{held} is enforced by the filesystem, in sessions too; {loose} is not "
                "enforced in sessions (the API checks it before its own writes only)"
            )
        else:
            what = (
                "size and file count are not enforced in sessions (the API checks them "
                "before its own writes only)"
            )
        return f"{what}: {self.reason}"


@attrs.frozen
class FolderLimits:
    """The caps of one folder, as the core stores them."""

    max_size_bytes: int
    max_files: int


@attrs.frozen
class HostSettings:
    """One ``[storage.hosts.NAME]`` table, as a backend receives it."""

    name: str
    type: str
    #: The configured ``path``, with an empty value already replaced by the default.
    path: str
    #: The free-form ``options`` table; a backend validates it in `open_host`.
    options: Mapping[str, Any]
    #: The server's state directory, for backends that keep local bookkeeping.
    state_dir: str


@runtime_checkable
class FileReader(Protocol):
    """An open regular file being downloaded."""

    #: Its size when it was opened (the download's progress total).
    size: int

    async def read(self, max_bytes: int) -> bytes:
        """Up to `max_bytes` next bytes; ``b""`` at the end."""

    async def aclose(self) -> None:
        """Release the file; called exactly once, also after errors."""


@runtime_checkable
class VFolderHost(Protocol):
    """The storage of the folders of one configured host."""

    async def create_folder(self, folder_id: str) -> None:
        """Make an empty folder. Called once per id."""

    async def delete_folder(self, folder_id: str) -> None:
        """Remove the folder and everything in it; a missing folder is not an error."""

    async def list_files(self, folder_id: str, path: RelPath) -> list[FileEntry]:
        """The entries of directory `path` (one level), without following symlinks.

        `EntryNotFound` when it does not exist, `NotADirectory` when it is not a directory.
        """

    async def stat(self, folder_id: str, path: RelPath) -> FileEntry | None:
        """The entry at `path` (not following a final symlink), or None when absent.

        A parent that is not a directory also answers None.
        """

    async def upload_file(self, folder_id: str, path: RelPath, chunks: AsyncIterable[bytes]) -> int:
        """Store the bytes of `chunks` as the regular file `path`; return the size.

        Missing parent directories are created; an existing file is replaced. The new
        content becomes visible only once `chunks` is exhausted: if iterating raises
        (the core's quota check, a client that hangs up, cancellation), nothing is left
        behind and the exception propagates. `NotADirectory` when a parent is not a
        directory, `NotAFile` when `path` exists and is not a regular file.
        """

    async def open_file(self, folder_id: str, path: RelPath) -> FileReader:
        """Open the regular file `path` for a download (`EntryNotFound`, `NotAFile`)."""

    async def mkdir(self, folder_id: str, path: RelPath) -> None:
        """Create directory `path` and its parents; an existing directory is fine.
        `NotADirectory` when something else is in the way."""

    async def delete_files(self, folder_id: str, paths: list[RelPath], *, recursive: bool) -> None:
        """Delete each path; missing ones are ignored. A directory needs `recursive`
        (`IsADirectory`, checked for all paths before anything is deleted)."""

    async def usage(self, folder_id: str) -> Usage:
        """Bytes and entries in the folder now (entries of every depth count)."""

    def mount_spec(self, folder_id: str, *, read_only: bool) -> MountSpec:
        """Where an agent finds the folder to bind-mount it (`NotMountable` if never)."""


@runtime_checkable
class QuotaEnforcingHost(Protocol):
    """Optional, beside `VFolderHost`: a host that makes its storage hold folder caps."""

    #: What folders created from now on get (decided when the host is opened); the
    #: core logs it at start-up, as a warning when a cap does not hold in sessions.
    quota_enforcement: QuotaEnforcement

    async def limit_folder(self, folder_id: str, limits: FolderLimits) -> QuotaEnforcement:
        """Make the storage hold `limits` for the folder; return what now holds for it.

        Called after `create_folder` and again for every folder at each start (so it must
        be idempotent, and a folder made before the storage could hold caps just answers
        what holds). Raise a `StorageError` only when the storage should have taken the
        caps and refused: the core then does not create the folder.
        """

    async def folder_enforcement(self, folder_id: str) -> QuotaEnforcement:
        """What holds for this folder now (its info reports it)."""


@runtime_checkable
class ClosableHost(Protocol):
    """Optional, beside `VFolderHost`: a host that holds something to release (a
    connection pool, worker threads, open descriptors) when the manager stops."""

    async def aclose(self) -> None:
        """Release what the host holds. Called once, after the host's last other call:
        when the manager stops, or when it fails to start after this host opened. The
        call is bounded by ``manager.shutdown_timeout``; an exception is logged."""


@runtime_checkable
class StorageBackend(Protocol):
    #: The value of ``type`` in ``[storage.hosts.NAME]`` that selects this backend.
    type: str

    def open_host(self, settings: HostSettings) -> VFolderHost:
        """A host for one configured table. Raise `ValueError` with a readable message
        for bad `settings` (the server then refuses to start and prints it)."""


@hookspec
def crucible_storage_backend() -> StorageBackend:  # type: ignore[empty-body]
    """Return a storage backend object. Called once when the manager starts."""
