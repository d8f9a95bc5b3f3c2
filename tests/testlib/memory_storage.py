"""A third-party-style storage plugin: folders kept in memory.

Registered only in tests (``create_plugin_manager("storage", memory_storage)``), it
proves the `crucible.hookspecs.storage` interface is enough to write a backend that
shares nothing with the built-in ``local`` one.
"""

from __future__ import annotations

import stat
import time
from collections.abc import AsyncIterable

from crucible.hookspecs.markers import hookimpl
from crucible.hookspecs.storage import (
    EntryNotFound,
    FileEntry,
    HostSettings,
    IsADirectory,
    MountSpec,
    NotADirectory,
    NotAFile,
    NotMountable,
    RelPath,
    Usage,
)

_DIR = None  # the value of a directory entry; files hold their bytes


class MemoryReader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0
        self.size = len(data)
        self.closed = False

    async def read(self, max_bytes: int) -> bytes:
        chunk = self._data[self._offset : self._offset + max_bytes]
        self._offset += len(chunk)
        return chunk

    async def aclose(self) -> None:
        self.closed = True


class MemoryHost:
    """A `VFolderHost`, and a `ClosableHost`: its folders go when the manager stops."""

    def __init__(self, name: str, *, max_entry_bytes: int) -> None:
        self.name = name
        self.max_entry_bytes = max_entry_bytes
        self.folders: dict[str, dict[RelPath, bytes | None]] = {}
        self.closed = False

    async def aclose(self) -> None:
        self.folders.clear()
        self.closed = True

    def _folder(self, folder_id: str) -> dict[RelPath, bytes | None]:
        try:
            return self.folders[folder_id]
        except KeyError:
            raise EntryNotFound("no such folder") from None

    def _check_parents(self, entries: dict[RelPath, bytes | None], path: RelPath) -> None:
        for depth in range(1, len(path)):
            parent = path[:depth]
            if parent not in entries:
                raise EntryNotFound("missing parent", parent)
            if entries[parent] is not _DIR:
                raise NotADirectory("not a directory", parent)

    @staticmethod
    def _entry(name: str, value: bytes | None) -> FileEntry:
        now = time.time()
        if value is _DIR:
            return FileEntry(name, 0, stat.S_IFDIR | 0o755, now, now, now)
        return FileEntry(name, len(value), stat.S_IFREG | 0o644, now, now, now)

    async def create_folder(self, folder_id: str) -> None:
        self.folders[folder_id] = {(): _DIR}

    async def delete_folder(self, folder_id: str) -> None:
        self.folders.pop(folder_id, None)

    async def list_files(self, folder_id: str, path: RelPath) -> list[FileEntry]:
        entries = self._folder(folder_id)
        self._check_parents(entries, path)
        if path not in entries:
            raise EntryNotFound("missing", path)
        if entries[path] is not _DIR:
            raise NotADirectory("not a directory", path)
        return sorted(
            (
                self._entry(p[-1], v)
                for p, v in entries.items()
                if len(p) == len(path) + 1 and p[: len(path)] == path
            ),
            key=lambda e: e.name,
        )

    async def stat(self, folder_id: str, path: RelPath) -> FileEntry | None:
        entries = self._folder(folder_id)
        if path not in entries:
            return None
        return self._entry(path[-1] if path else ".", entries[path])

    async def upload_file(self, folder_id: str, path: RelPath, chunks: AsyncIterable[bytes]) -> int:
        entries = self._folder(folder_id)
        staged = bytearray()
        async for chunk in chunks:  # an exception here leaves `entries` untouched
            staged += chunk
        if path in entries and entries[path] is _DIR:
            raise NotAFile("a directory", path)
        for depth in range(1, len(path)):
            parent = path[:depth]
            if entries.setdefault(parent, _DIR) is not _DIR:
                raise NotADirectory("not a directory", parent)
        entries[path] = bytes(staged)
        return len(staged)

    async def open_file(self, folder_id: str, path: RelPath) -> MemoryReader:
        entries = self._folder(folder_id)
        if path not in entries:
            raise EntryNotFound("missing", path)
        value = entries[path]
        if value is _DIR:
            raise NotAFile("a directory", path)
        return MemoryReader(value)

    async def mkdir(self, folder_id: str, path: RelPath) -> None:
        entries = self._folder(folder_id)
        for depth in range(1, len(path) + 1):
            if entries.setdefault(path[:depth], _DIR) is not _DIR:
                raise NotADirectory("not a directory", path[:depth])

    async def delete_files(self, folder_id: str, paths: list[RelPath], *, recursive: bool) -> None:
        entries = self._folder(folder_id)
        for path in paths:
            if entries.get(path, b"") is _DIR and not recursive:
                raise IsADirectory("a directory", path)
        for path in paths:
            for key in [k for k in entries if k[: len(path)] == path]:
                del entries[key]

    async def usage(self, folder_id: str) -> Usage:
        entries = self._folder(folder_id)
        size = sum(len(v) for v in entries.values() if v is not _DIR)
        return Usage(size_bytes=size, file_count=len(entries) - 1)

    def mount_spec(self, folder_id: str, *, read_only: bool) -> MountSpec:
        raise NotMountable("in-memory folders cannot be mounted into sessions")


class MemoryBackend:
    type = "memory"

    def open_host(self, settings: HostSettings) -> MemoryHost:
        unknown = set(settings.options) - {"max_entry_bytes"}
        if unknown:
            raise ValueError(f"unknown options {sorted(unknown)}")
        limit = settings.options.get("max_entry_bytes", 1 << 20)
        if not isinstance(limit, int) or limit <= 0:
            raise ValueError("options.max_entry_bytes must be a positive integer")
        return MemoryHost(settings.name, max_entry_bytes=limit)


@hookimpl
def crucible_storage_backend() -> MemoryBackend:
    return MemoryBackend()
