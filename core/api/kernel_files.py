"""``/kernel/:id/upload|files|download``: files in a session's /home/work (spec 4.9-4.11).

The agent owns the files (crucible.agent.files); this blueprint only speaks HTTP:

* uploads are parsed as they arrive and relayed to the agent a chunk at a time, so the
  manager never holds a whole upload; the agent stages them and writes nothing until
  every part has arrived and every target path is acceptable;
* downloads are checked (every path, every limit) before the first byte is sent, then
  streamed one part per file, laid out for the 18.12 client's line-splitting parser
  (see `_aligned_part`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import trio
from quart import Blueprint, Response, request
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from crucible import errors
from crucible.api.body import json_body
from crucible.api.context import manager_context
from crucible.api.guard import authenticated, current_keypair
from crucible.kernels.limits import (
    MAX_DOWNLOAD_FILES,
    MAX_PATH_BYTES,
    MAX_UPLOAD_FILE_BYTES,
    MAX_UPLOAD_FILES,
)
from crucible.sessions.model import Session
from crucible.sessions.registry import SessionRegistry
from crucible.validation import bounded_list, text
from crucible.vfolders.multipart import part_filename

blueprint = Blueprint("kernel_files", __name__)

#: Raw bytes per upload relay call (base64 makes it a third larger in the message).
RELAY_CHUNK_BYTES = 192 * 1024
#: Multipart overhead allowed per part (boundary and headers) when bounding a body.
PART_OVERHEAD_BYTES = 8 * 1024
MAX_UPLOAD_BODY_BYTES = MAX_UPLOAD_FILES * (MAX_UPLOAD_FILE_BYTES + 1 + PART_OVERHEAD_BYTES)
#: Body bytes given to the multipart decoder at once, and what it may hold (a non-file
#: part is held whole until it ends, then refused).
DECODER_SLICE_BYTES = 64 * 1024
DECODER_MEMORY_BYTES = 1024 * 1024
#: The 18.12 client reads a download 1 KiB at a time; see `_aligned_part`.
CLIENT_READ_BYTES = 1024


async def _session(token: str) -> Session:
    return await manager_context().registry.get_live(current_keypair().access_key, token)


def _session_path(value: object, field: str) -> str:
    """A path in the session as the client wrote it; where it may point is the agent's
    judgement (crucible.agent.files), what it may contain is checked here."""
    return text(value, field, max_bytes=MAX_PATH_BYTES, allow_empty=False)


# -- upload ---------------------------------------------------------------------------------


class _UploadRelay:
    """One upload on the agent: begun with the first file, committed or aborted."""

    def __init__(self, registry: SessionRegistry, session: Session) -> None:
        self.registry = registry
        self.session = session
        self.upload_id: str | None = None
        self.files = 0
        self.size = 0
        self._pending = bytearray()

    async def _step(self, step: str, **params: Any) -> Any:
        return await self.registry.file_call(
            self.session,
            "upload_files",
            {"step": step, "upload_id": self.upload_id, **params},
            bad_path_status=400,
        )

    async def add_file(self, path: str) -> None:
        _session_path(path, "filename")
        await self.flush()
        self.files += 1
        if self.files > MAX_UPLOAD_FILES:
            raise errors.InvalidAPIParameters(f"At most {MAX_UPLOAD_FILES} files per upload.")
        if self.upload_id is None:
            self.upload_id = str((await self._step("begin"))["upload_id"])
        self.size = 0
        await self._step("file", path=path)

    async def add_data(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > MAX_UPLOAD_FILE_BYTES:
            raise errors.InvalidAPIParameters("Each file must be smaller than 1 MiB.")
        self._pending += data
        if len(self._pending) >= RELAY_CHUNK_BYTES:
            await self.flush()

    async def flush(self) -> None:
        if self._pending:
            data = base64.b64encode(bytes(self._pending)).decode("ascii")
            self._pending.clear()
            await self._step("data", data=data)

    async def commit(self) -> None:
        if self.upload_id is None:
            raise errors.InvalidAPIParameters("No files to upload (parts named 'src').")
        await self.flush()
        await self._step("commit")

    async def abort(self) -> None:
        if self.upload_id is not None:
            try:
                await self._step("abort")
            except errors.ProblemError:
                pass  # the agent drops idle uploads on its own


def _boundary() -> bytes:
    mimetype, options = parse_options_header(request.headers.get("Content-Type", ""))
    boundary = options.get("boundary", "")
    if mimetype != "multipart/form-data" or not boundary:
        raise errors.InvalidAPIParameters("Uploads must be multipart/form-data.")
    try:
        return boundary.encode("ascii")
    except UnicodeEncodeError:
        raise errors.InvalidAPIParameters("A malformed multipart boundary.") from None


async def _body_chunks(idle_timeout: float) -> AsyncIterator[bytes]:
    """The request body's chunks; a client that sends nothing for `idle_timeout` seconds
    is refused rather than allowed to hold the upload (and the agent's staging) open."""
    body = request.body
    while True:
        with trio.move_on_after(idle_timeout) as scope:
            try:
                chunk = await body.__anext__()
            except StopAsyncIteration:
                return
        if scope.cancelled_caught:
            raise errors.GenericBadRequest("The upload stalled.")
        yield chunk


async def _relay(relay: _UploadRelay, decoder: MultipartDecoder) -> None:
    """Feed the request body through `decoder` to the agent, part by part."""
    finished = False
    async for chunk in _body_chunks(manager_context().config.manager.body_timeout):
        # In slices: the decoder keeps what it was given until its events are taken.
        for start in range(0, len(chunk), DECODER_SLICE_BYTES):
            decoder.receive_data(chunk[start : start + DECODER_SLICE_BYTES])
            finished = await _handle_events(relay, decoder)
    if not finished:
        decoder.receive_data(None)
        finished = await _handle_events(relay, decoder)
    if not finished:
        raise errors.InvalidAPIParameters("The multipart body ended early.")


async def _handle_events(relay: _UploadRelay, decoder: MultipartDecoder) -> bool:
    """Handle the decoder's ready events; True once the closing boundary was seen."""
    while True:
        try:
            event = decoder.next_event()
        except ValueError as exc:
            raise errors.InvalidAPIParameters(f"A malformed multipart body: {exc}.") from None
        if isinstance(event, NeedData):
            return False
        if isinstance(event, Epilogue):
            return True
        if isinstance(event, File):
            if event.name != "src":
                raise errors.InvalidAPIParameters("Upload parts must be named 'src'.")
            filename = part_filename(event.headers.get("Content-Disposition", ""))
            if not filename:
                raise errors.InvalidAPIParameters("An upload part without a file name.")
            await relay.add_file(filename)
        elif isinstance(event, Field):
            raise errors.InvalidAPIParameters("Upload parts must be files named 'src'.")
        elif isinstance(event, Data) and relay.files:
            await relay.add_data(event.data)


@blueprint.route("/kernel/<token>/upload", methods=["POST"])
@authenticated
async def upload(token: str) -> tuple[str, int]:
    session = await _session(token)
    relay = _UploadRelay(manager_context().registry, session)
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        declared = 0
    try:
        if declared > MAX_UPLOAD_BODY_BYTES:
            raise errors.InvalidAPIParameters(
                f"At most {MAX_UPLOAD_FILES} files of less than 1 MiB each per upload."
            )
        decoder = MultipartDecoder(_boundary(), max_form_memory_size=DECODER_MEMORY_BYTES)
        await _relay(relay, decoder)
        await relay.commit()
    except errors.ProblemError:
        await relay.abort()
        # Read (and drop) the rest, so that the client, still sending, sees the answer;
        # a body past the size cap ends the draining, not this answer.
        drain = manager_context().config.manager.discard_body_timeout
        with contextlib.suppress(Exception), trio.move_on_after(drain):
            async for _chunk in request.body:
                pass
        raise
    except BaseException:
        await relay.abort()
        raise
    return "", 204


# -- listing --------------------------------------------------------------------------------


@blueprint.route("/kernel/<token>/files", methods=["GET"])
@authenticated
async def list_files(token: str) -> dict[str, Any]:
    body = await json_body()
    raw_path = body.get("path")
    path = "." if raw_path is None or raw_path == "" else _session_path(raw_path, "path")
    session = await _session(token)
    result = await manager_context().registry.file_call(
        session, "list_files", {"path": path}, bad_path_status=404
    )
    abspath = str(result["path"])
    return {
        # A JSON string inside JSON: the 18.12 client json.loads() it (spec 4.10).
        "files": json.dumps(result["files"]),
        "abspath": abspath,
        "folder_path": abspath,
        "errors": "",
    }


# -- download -------------------------------------------------------------------------------


def _aligned_part(boundary: str, first: bool, name: str, archive: bytes) -> bytes:
    """One multipart part (with its leading delimiter) whose length is a multiple of 1 KiB.

    The 18.12 client reads the body 1 KiB at a time, splits each read at CRLF, takes a
    line starting with ``--`` for a boundary, drops ``Content-`` lines and empty ones and
    writes everything else into the current tar file. A delimiter or header cut in two
    by a read would leave a fragment in the tar and break it. So every part starts on a
    1 KiB boundary of the body: its delimiter and headers (well under 1 KiB) then always
    arrive in one read. Tar archives end in zero blocks and any more zero bytes after
    them are still a valid archive, so the padding goes there, inside the part: a
    standard multipart reader sees a well-formed part and a valid tar.
    """
    disposition = f"attachment; filename*=utf-8''{quote(name, safe='')}"
    pad = 0
    for _ in range(4):  # the length header's own width can shift the layout once
        head = (
            ("" if first else "\r\n")
            + f"--{boundary}\r\n"
            + "Content-Type: application/octet-stream\r\n"
            + f"Content-Disposition: {disposition}\r\n"
            + f"Content-Length: {len(archive) + pad}\r\n\r\n"
        ).encode("ascii")
        wanted = -(len(head) + len(archive)) % CLIENT_READ_BYTES
        if wanted == pad:
            break
        pad = wanted
    return head + archive + b"\0" * pad


@blueprint.route("/kernel/<token>/download", methods=["GET"])
@authenticated
async def download(token: str) -> Response:
    body = await json_body()
    files = bounded_list(body.get("files"), "files", max_items=MAX_DOWNLOAD_FILES)
    for path in files:
        _session_path(path, "files")
    session = await _session(token)
    registry = manager_context().registry
    # Every path and limit is checked before the status line goes out.
    await registry.file_call(
        session, "download_files", {"step": "check", "files": files}, bad_path_status=404
    )
    boundary = "crucible-" + secrets.token_hex(16)

    async def parts() -> AsyncIterator[bytes]:
        for index, path in enumerate(files):
            result = await registry.file_call(
                session, "download_files", {"step": "archive", "path": path}, bad_path_status=404
            )
            archive = base64.b64decode(result["data"])
            yield _aligned_part(boundary, index == 0, str(result["name"]), archive)
        yield f"\r\n--{boundary}--\r\n".encode("ascii")

    return Response(parts(), content_type=f"multipart/mixed; boundary={boundary}")
