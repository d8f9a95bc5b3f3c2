"""The calls about a session's files (spec 4.9-4.11), one per step, and their replies.

The agent does the work (``crucible.agent.files``); paths are as the client wrote them,
relative to ``/home/work`` or absolute under it. Refusals are error replies of kind
``invalid-path``, ``too-large`` or ``file-not-found`` (`crucible.protocol.failures`).

An upload comes in several calls, so that no message holds a whole upload:
`UploadBegin`, then per file `UploadFile` and any number of `UploadData` chunks, then
`UploadCommit` (which writes everything, or nothing) or `UploadAbort`. A download is
checked whole first (`DownloadCheck`, nothing read), then fetched one path per call
(`DownloadArchive`) to keep messages small.
"""

from __future__ import annotations

import attrs

from crucible.protocol.calls import AgentCall, Done, agent_call

# -- replies --------------------------------------------------------------------------------


@attrs.frozen
class UploadBegun:
    upload_id: str


@attrs.frozen
class UploadCommitted:
    #: The absolute paths written, in upload order.
    written: tuple[str, ...]


@attrs.frozen
class FileEntry:
    """One directory entry as spec 4.10 lists it (``lstat``: links are not followed)."""

    filename: str
    size: int
    mode: str  # as ``ls -l`` shows it: ``-rw-r--r--``
    mtime: float
    ctime: float
    atime: float


@attrs.frozen
class FileListing:
    path: str  # the absolute path listed
    files: tuple[FileEntry, ...]


@attrs.frozen
class ArchiveEntry:
    """What one path of a download holds: its absolute path, the archive's name, and
    the bytes of content the archive carries."""

    path: str
    name: str
    bytes: int


@attrs.frozen
class DownloadChecked:
    entries: tuple[ArchiveEntry, ...]


@attrs.frozen
class Archive:
    path: str
    name: str
    bytes: int
    data: str  # base64 of an uncompressed tar archive


# -- calls ----------------------------------------------------------------------------------


@agent_call("upload_begin")
@attrs.frozen
class UploadBegin(AgentCall[UploadBegun]):
    kernel_id: str


@agent_call("upload_file")
@attrs.frozen
class UploadFile(AgentCall[Done]):
    """The next file of the upload; the `UploadData` calls that follow are its content."""

    kernel_id: str
    upload_id: str
    path: str


@agent_call("upload_data")
@attrs.frozen
class UploadData(AgentCall[Done]):
    kernel_id: str
    upload_id: str
    data: str  # base64


@agent_call("upload_commit")
@attrs.frozen
class UploadCommit(AgentCall[UploadCommitted]):
    kernel_id: str
    upload_id: str


@agent_call("upload_abort")
@attrs.frozen
class UploadAbort(AgentCall[Done]):
    kernel_id: str
    upload_id: str


@agent_call("list_files")
@attrs.frozen
class ListFiles(AgentCall[FileListing]):
    kernel_id: str
    path: str


@agent_call("download_check")
@attrs.frozen
class DownloadCheck(AgentCall[DownloadChecked]):
    kernel_id: str
    paths: tuple[str, ...]


@agent_call("download_archive")
@attrs.frozen
class DownloadArchive(AgentCall[Archive]):
    kernel_id: str
    path: str


#: Every file call: the agent hands them all to its file service (crucible.agent.files).
FileCall = (
    UploadBegin
    | UploadFile
    | UploadData
    | UploadCommit
    | UploadAbort
    | ListFiles
    | DownloadCheck
    | DownloadArchive
)
FILE_CALLS: tuple[type[FileCall], ...] = (
    UploadBegin,
    UploadFile,
    UploadData,
    UploadCommit,
    UploadAbort,
    ListFiles,
    DownloadCheck,
    DownloadArchive,
)
