"""Uploads into a session's /home/work, relayed to its agent part by part (spec 4.9).

The agent owns the files (crucible.agent.files): it stages what arrives and writes
nothing until every part has arrived and every target path is acceptable. Here an
upload is checked against the request's limits and cut into calls of at most
`RELAY_CHUNK_BYTES`, so the manager never holds more of it than that, and no call
grows with the size of the body's reads.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterable
from typing import TypeVar

from crucible import errors
from crucible.api.multipart import Part
from crucible.kernels.limits import MAX_PATH_BYTES, MAX_UPLOAD_FILE_BYTES, MAX_UPLOAD_FILES
from crucible.protocol.calls import AgentCall
from crucible.protocol.file_calls import (
    UploadAbort,
    UploadBegin,
    UploadCommit,
    UploadData,
    UploadFile,
)
from crucible.sessions.lifecycle import SessionLifecycle
from crucible.sessions.model import Session
from crucible.validation import text

R = TypeVar("R")

#: Raw bytes per upload relay call (base64 makes it a third larger in the message). Each
#: call is a round trip to the agent's process: 384 KiB makes a 1 MiB file three data
#: calls, not six (the manager holds about 1.2 MiB per upload in flight for it).
RELAY_CHUNK_BYTES = 384 * 1024


class _UploadRelay:
    """One upload on the agent: begun with the first file, committed or aborted."""

    def __init__(self, sessions: SessionLifecycle, session: Session) -> None:
        self.sessions = sessions
        self.session = session
        self.upload_id: str | None = None
        self.files = 0
        self.size = 0
        self._pending = bytearray()

    async def _step(self, call: AgentCall[R]) -> R:
        return await self.sessions.file_call(self.session, call, bad_path_status=400)

    def _begun(self) -> str:
        assert self.upload_id is not None, "a step of an upload that was never begun"
        return self.upload_id

    async def add_file(self, path: str) -> None:
        text(path, "filename", max_bytes=MAX_PATH_BYTES, allow_empty=False)
        await self.flush()
        self.files += 1
        if self.files > MAX_UPLOAD_FILES:
            raise errors.InvalidAPIParameters(f"At most {MAX_UPLOAD_FILES} files per upload.")
        kernel_id = self.session.id
        if self.upload_id is None:
            self.upload_id = (await self._step(UploadBegin(kernel_id))).upload_id
        self.size = 0
        await self._step(UploadFile(kernel_id, self._begun(), path))

    async def add_data(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > MAX_UPLOAD_FILE_BYTES:
            raise errors.InvalidAPIParameters("Each file must be smaller than 1 MiB.")
        rest = memoryview(data)
        while rest:
            room = RELAY_CHUNK_BYTES - len(self._pending)
            self._pending += rest[:room]
            rest = rest[room:]
            if len(self._pending) == RELAY_CHUNK_BYTES:
                await self.flush()

    async def flush(self) -> None:
        if self._pending:
            data = base64.b64encode(self._pending).decode("ascii")
            self._pending.clear()
            await self._step(UploadData(self.session.id, self._begun(), data))

    async def commit(self) -> None:
        if self.upload_id is None:
            raise errors.InvalidAPIParameters("No files to upload (parts named 'src').")
        await self.flush()
        await self._step(UploadCommit(self.session.id, self._begun()))

    async def abort(self) -> None:
        if self.upload_id is not None:
            try:
                await self._step(UploadAbort(self.session.id, self.upload_id))
            except errors.ProblemError:
                pass  # the agent drops idle uploads on its own


async def relay_upload(
    sessions: SessionLifecycle, session: Session, parts: AsyncIterable[Part]
) -> None:
    """Write the file parts of an upload (each named ``src``) into `session`, all of
    them or, on any refusal, none."""
    relay = _UploadRelay(sessions, session)
    try:
        async for part in parts:
            if part.filename is None:
                raise errors.InvalidAPIParameters("Upload parts must be files named 'src'.")
            if part.name != "src":
                raise errors.InvalidAPIParameters("Upload parts must be named 'src'.")
            if not part.filename:
                raise errors.InvalidAPIParameters("An upload part without a file name.")
            await relay.add_file(part.filename)
            async for data in part.content:
                await relay.add_data(data)
        await relay.commit()
    except BaseException:
        await relay.abort()
        raise
