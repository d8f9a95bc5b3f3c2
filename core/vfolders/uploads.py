"""Writing an upload's file parts into a folder, within the folder's quotas.

The caller holds the folder's write lock, so the usage read at the start stays true
apart from what this upload itself writes (sessions aside, which only a filesystem
quota holds back).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

from crucible import errors
from crucible.api.multipart import Part
from crucible.hookspecs.storage import RelPath, Usage, VFolderHost
from crucible.vfolders.paths import parse_path
from crucible.vfolders.repository import VFolder


async def new_entries(backend: VFolderHost, folder: VFolder, path: RelPath) -> int:
    """How many entries writing `path` adds (itself and missing parents)."""
    for depth in range(1, len(path) + 1):
        if await backend.stat(folder.id, path[:depth]) is None:
            return len(path) - depth + 1
    return 0


async def _capped(
    chunks: AsyncIterable[bytes], allowance: int, path: RelPath
) -> AsyncIterator[bytes]:
    """Pass `chunks` on, refusing (before it is written) the chunk that passes `allowance`."""
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > allowance:
            raise errors.QuotaExceeded(
                f"Uploading {'/'.join(path)} would exceed the folder's size quota."
            )
        yield chunk


async def write_parts(
    backend: VFolderHost, folder: VFolder, parts: AsyncIterable[Part], *, max_files: int
) -> list[str]:
    """Store every file part (fields are skipped) at the path its filename names;
    returns the paths written. At most `max_files` files (``limits.max_folder_files``)."""
    usage = await backend.usage(folder.id)
    written: list[str] = []
    async for part in parts:
        if part.filename is None:
            continue
        if len(written) >= max_files:
            raise errors.InvalidAPIParameters(
                f"An upload may hold at most {max_files} files (limits.max_folder_files)."
            )
        path = parse_path(part.filename, key="filename", allow_root=False)
        added = await new_entries(backend, folder, path)
        if usage.file_count + added > folder.max_files:
            raise errors.QuotaExceeded(
                f"The folder may hold at most {folder.max_files} files and directories."
            )
        existing = await backend.stat(folder.id, path)
        replaced = existing.size if existing is not None and existing.is_file else 0
        allowance = folder.max_size - usage.size_bytes + replaced
        size = await backend.upload_file(folder.id, path, _capped(part.content, allowance, path))
        usage = Usage(usage.size_bytes - replaced + size, usage.file_count + added)
        written.append("/".join(path))
    return written
