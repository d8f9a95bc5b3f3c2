"""Which session a claimed pooled kernel serves, kept where no kernel can write.

A pooled container's labels were written when it was made, before any session existed,
and labels never change: so the agent records each claim in its own state directory
(``<state>/agent/claims``, root's, mode 0700), one file per container, written
atomically (a fresh file renamed into place). Not fsynced: what it guards against is
the agent's own end (a crash, a kill -9), after which the page cache still holds the
file; a host that goes down takes the kernel containers with it. A restarted agent reads the
record to supervise the kernel again as the session it serves; a pooled container
without one was never claimed and is discarded.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path

from crucible.agent.kernel.info import KernelInfo, info_from_label, info_to_label

_CONTAINER_ID_RE = re.compile(r"^[0-9a-f]{12,64}$")


class ClaimRecords:
    """One JSON file per claimed pooled container, in `root`. Blocking: call the methods
    in a worker thread."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, container_id: str) -> Path:
        if not _CONTAINER_ID_RE.fullmatch(container_id):
            raise ValueError(f"not a container id: {container_id!r}")
        return self.root / f"{container_id}.json"

    def _ensure_root(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fchown(fd, os.geteuid(), os.getegid())
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)

    def write(self, container_id: str, info: KernelInfo) -> None:
        """Record that `container_id` now serves kernel `info` (replacing any record)."""
        self._ensure_root()
        path = self._path(container_id)
        temporary = path.with_suffix(".tmp")
        data = json.dumps({"container_id": container_id, "info": info_to_label(info)}).encode()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temporary, flags, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(temporary, path)

    def read(self, container_id: str) -> KernelInfo | None:
        """The kernel `container_id` was claimed for; None: never claimed (or the record
        is unreadable, which makes it unusable all the same)."""
        try:
            fd = os.open(self._path(container_id), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (OSError, ValueError):  # none, or not a plain file (ELOOP: a link)
            return None
        try:
            with os.fdopen(fd, "rb") as file:
                record = json.loads(file.read(1 << 20))
            if record.get("container_id") != container_id:
                return None
            return info_from_label(record["info"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def remove(self, container_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(container_id))

    def container_ids(self) -> list[str]:
        """Every container with a record (for sweeping the records of gone ones)."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            stem, _, suffix = name.partition(".")
            if suffix == "json" and _CONTAINER_ID_RE.fullmatch(stem):
                found.append(stem)
        return found
