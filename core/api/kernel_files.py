"""``/kernel/:id/upload|files|download``: files in a session's /home/work (spec 4.9-4.11).

The agent owns the files (crucible.agent.files); this blueprint only speaks HTTP:

* uploads are parsed as they arrive (crucible.api.multipart) and relayed to the agent a
  chunk at a time (crucible.sessions.files), so the manager never holds a whole upload;
* downloads are checked (every path, every limit) before the first byte is sent, then
  streamed one part per file, laid out for the 18.12 client's line-splitting parser
  (see `_archive_part`).
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import attrs
import trio
from quart import Blueprint, Response, request

from crucible import errors
from crucible.api.body import json_body
from crucible.api.context import manager_context
from crucible.api.guard import authenticated, current_keypair
from crucible.api.multipart import MultipartReader, MultipartWriter, attachment, boundary_of
from crucible.kernels.limits import (
    MAX_DOWNLOAD_FILES,
    MAX_PATH_BYTES,
    MAX_UPLOAD_FILE_BYTES,
    MAX_UPLOAD_FILES,
)
from crucible.protocol.file_calls import DownloadArchive, DownloadCheck, ListFiles
from crucible.sessions.files import relay_upload
from crucible.sessions.model import Session
from crucible.validation import bounded_list, text

blueprint = Blueprint("kernel_files", __name__)

#: Multipart overhead allowed per part (boundary and headers) when bounding a body.
PART_OVERHEAD_BYTES = 8 * 1024
MAX_UPLOAD_BODY_BYTES = MAX_UPLOAD_FILES * (MAX_UPLOAD_FILE_BYTES + 1 + PART_OVERHEAD_BYTES)
#: The 18.12 client reads a download 1 KiB at a time; see `_archive_part`.
CLIENT_READ_BYTES = 1024


async def _session(token: str) -> Session:
    return await manager_context().sessions.get_live(current_keypair().access_key, token)


def _session_path(value: object, field: str) -> str:
    """A path in the session as the client wrote it; where it may point is the agent's
    judgement (crucible.agent.files), what it may contain is checked here."""
    return text(value, field, max_bytes=MAX_PATH_BYTES, allow_empty=False)


# -- upload ---------------------------------------------------------------------------------


@blueprint.route("/kernel/<token>/upload", methods=["POST"])
@authenticated
async def upload(token: str) -> tuple[str, int]:
    session = await _session(token)
    ctx = manager_context()
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        declared = 0
    try:
        if declared > MAX_UPLOAD_BODY_BYTES:
            raise errors.InvalidAPIParameters(
                f"At most {MAX_UPLOAD_FILES} files of less than 1 MiB each per upload."
            )
        reader = MultipartReader(
            request.body,
            boundary_of(request.headers.get("Content-Type")),
            idle_timeout=ctx.config.manager.body_timeout,
        )
        async with contextlib.aclosing(reader.parts()) as parts:
            await relay_upload(ctx.sessions, session, parts)
    except errors.ProblemError:
        # Read (and drop) the rest, so that the client, still sending, sees the answer;
        # a body past the size cap ends the draining, not this answer.
        drain = manager_context().config.manager.discard_body_timeout
        with contextlib.suppress(Exception), trio.move_on_after(drain):
            async for _chunk in request.body:
                pass
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
    listing = await manager_context().sessions.file_call(
        session, ListFiles(session.id, path), bad_path_status=404
    )
    abspath = listing.path
    return {
        # A JSON string inside JSON: the 18.12 client json.loads() it (spec 4.10).
        "files": json.dumps([attrs.asdict(entry) for entry in listing.files]),
        "abspath": abspath,
        "folder_path": abspath,
        "errors": "",
    }


# -- download -------------------------------------------------------------------------------


def _archive_part(writer: MultipartWriter, name: str, archive: bytes) -> bytes:
    """One download part whose length (its leading delimiter included) is a multiple of
    1 KiB.

    The 18.12 client reads the body 1 KiB at a time, splits each read at CRLF, takes a
    line starting with ``--`` for a boundary, drops ``Content-`` lines and empty ones and
    writes everything else into the current tar file. A delimiter or header cut in two
    by a read would leave a fragment in the tar and break it. So every part starts on a
    1 KiB boundary of the body: its delimiter and headers (well under 1 KiB) then always
    arrive in one read. Tar archives end in zero blocks and any more zero bytes after
    them are still a valid archive, so the padding goes there, inside the part: a
    standard multipart reader sees a well-formed part and a valid tar.
    """
    headers = [
        ("Content-Type", "application/octet-stream"),
        ("Content-Disposition", attachment(name, plain=False)),
    ]
    return writer.padded_part(headers, archive, align=CLIENT_READ_BYTES)


@blueprint.route("/kernel/<token>/download", methods=["GET"])
@authenticated
async def download(token: str) -> Response:
    body = await json_body()
    files = bounded_list(body.get("files"), "files", max_items=MAX_DOWNLOAD_FILES)
    for path in files:
        _session_path(path, "files")
    session = await _session(token)
    sessions = manager_context().sessions
    # Every path and limit is checked before the status line goes out.
    await sessions.file_call(
        session, DownloadCheck(session.id, tuple(files)), bad_path_status=404
    )
    writer = MultipartWriter()

    async def parts() -> AsyncIterator[bytes]:
        for path in files:
            fetched = await sessions.file_call(
                session, DownloadArchive(session.id, path), bad_path_status=404
            )
            archive = base64.b64decode(fetched.data)
            yield _archive_part(writer, fetched.name, archive)
        yield writer.end()

    return Response(parts(), content_type=writer.content_type)
