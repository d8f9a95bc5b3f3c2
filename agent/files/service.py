"""Session files as the agent serves them: one kernel's operations, and every kernel's.

`KernelFiles` answers the file calls on one kernel's work tree (each a step of an
upload, a listing, a download check or archive); `FileService` keeps one per kernel
and runs the calls in worker threads, one at a time per kernel.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from crucible.agent.files import downloads
from crucible.agent.files.paths import FileOpError, invalid, open_root
from crucible.agent.files.uploads import Uploads
from crucible.kernels.limits import MAX_DOWNLOAD_FILES
from crucible.protocol.calls import Done
from crucible.protocol.file_calls import (
    Archive,
    DownloadArchive,
    DownloadCheck,
    DownloadChecked,
    FileCall,
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


class KernelFiles:
    """The file operations on one kernel's work tree (host path `work_dir`).

    Every method is blocking; the agent runs them in a worker thread.
    """

    def __init__(self, work_dir: Path, staging_dir: Path, *, upload_idle_timeout: float) -> None:
        self.work_dir = work_dir
        self.uploads = Uploads(work_dir, staging_dir, idle_timeout=upload_idle_timeout)

    def close(self) -> None:
        self.uploads.close()

    # -- uploads ------------------------------------------------------------------------

    def upload_begin(self, call: UploadBegin) -> UploadBegun:
        return UploadBegun(self.uploads.begin())

    def upload_file(self, call: UploadFile) -> Done:
        uploads = self.uploads
        uploads.step(call.upload_id, lambda upload: uploads.add_file(upload, call.path))
        return Done()

    def upload_data(self, call: UploadData) -> Done:
        uploads = self.uploads
        uploads.step(call.upload_id, lambda upload: uploads.add_data(upload, call.data))
        return Done()

    def upload_commit(self, call: UploadCommit) -> UploadCommitted:
        return UploadCommitted(tuple(self.uploads.step(call.upload_id, self.uploads.commit)))

    def upload_abort(self, call: UploadAbort) -> Done:
        self.uploads.step(call.upload_id, self.uploads.drop)
        return Done()

    # -- listing and downloads ----------------------------------------------------------

    def list_dir(self, call: ListFiles) -> FileListing:
        """The entries of a directory, as spec 4.10 describes them (``lstat``, no links)."""
        with open_root(self.work_dir) as root:
            return downloads.list_dir(root, call.path or ".")

    def check_download(self, call: DownloadCheck) -> DownloadChecked:
        """Refuse a download before any byte is sent: every path exists and fits."""
        paths = call.paths
        if not paths:
            raise invalid("'files' must be a non-empty list of paths")
        if len(paths) > MAX_DOWNLOAD_FILES:
            raise FileOpError("too-large", f"at most {MAX_DOWNLOAD_FILES} files per download")
        with open_root(self.work_dir) as root:
            entries = tuple(downloads.archive(root, path, dry_run=True)[0] for path in paths)
        return DownloadChecked(entries)

    def archive(self, call: DownloadArchive) -> Archive:
        """One path as an uncompressed tar archive (a directory with its tree)."""
        with open_root(self.work_dir) as root:
            entry, data = downloads.archive(root, call.path, dry_run=False)
        encoded = base64.b64encode(data).decode("ascii")
        return Archive(path=entry.path, name=entry.name, bytes=entry.bytes, data=encoded)


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
