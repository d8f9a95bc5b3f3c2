"""The problems of the folder API beyond the shared tree (`crucible.errors`), and what a
storage plugin's refusals mean to the client."""

from __future__ import annotations

from typing import ClassVar

from crucible import errors
from crucible.hookspecs.storage import EntryNotFound, StorageError, StorageFull


class FolderPathNotFound(errors.GenericNotFound):
    title = "No such file or directory in the folder."


class InvitationNotFound(errors.GenericNotFound):
    title = "No such pending invitation."


class VFolderInUse(errors.ProblemError):
    """Deleting a folder that live sessions mount: refused (see docs/plugins.md)."""

    status: ClassVar[int] = 409
    type_suffix: ClassVar[str] = "vfolder-in-use"
    title: ClassVar[str] = "The virtual folder is mounted by running sessions."


def storage_problem(exc: StorageError) -> errors.ProblemError:
    """What a storage plugin's refusal is to the client."""
    if isinstance(exc, StorageFull):
        # The filesystem's own cap (or a full disk) refused what the API's check let
        # through: a session may have filled the folder since, or blocks round up.
        return errors.QuotaExceeded(f"The folder is full: {exc}.")
    if isinstance(exc, EntryNotFound):
        return FolderPathNotFound(str(exc))
    # Not a directory, not a file, a directory where a file was meant, not mountable:
    # the request asked for what the folder cannot do.
    return errors.InvalidAPIParameters(str(exc))
