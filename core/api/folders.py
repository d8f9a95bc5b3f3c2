"""``/folders...``: virtual folders (spec 6). The rules live in `crucible.vfolders`."""

from __future__ import annotations

import contextlib
import json
import stat
import zlib
from collections.abc import AsyncIterator
from typing import Any

import trio
from quart import Blueprint, Response, request

from crucible.api.body import json_body, optional_bool
from crucible.api.context import manager_context
from crucible.api.flow_control import raise_body_limit
from crucible.api.guard import authenticated, current_keypair, requires_running
from crucible.api.multipart import MultipartReader, MultipartWriter, attachment, boundary_of
from crucible.hookspecs.storage import FileEntry, FileReader
from crucible.vfolders.repository import Access, VFolder
from crucible.vfolders.service import VFolderService

blueprint = Blueprint("folders", __name__)

#: Bytes of multipart framing allowed on top of a folder's quota in one upload body.
UPLOAD_FRAMING_SLACK = 16 * 1024 * 1024
#: Bytes read (and compressed) per step of a download.
DOWNLOAD_CHUNK = 1024 * 1024
#: gzip level of downloads: the client insists on gzip (spec 6.10); level 1 keeps the
#: manager's CPU, not the compression ratio, from being the bottleneck.
GZIP_LEVEL = 1


def _service() -> VFolderService:
    return manager_context().vfolders


async def _folder(name: str, permission: str) -> tuple[VFolderService, Access]:
    """The folder service, and folder `name` as the caller reaches it with at least
    `permission` (``ro``, ``rw``, ``rd``; else 404)."""
    service = _service()
    return service, await service.get(current_keypair(), name, permission)


async def _folder_request(
    name: str, permission: str
) -> tuple[VFolderService, Access, dict[str, Any]]:
    """`_folder`, and the request's JSON body (read first: a bad body is a 400 whoever
    asks)."""
    body = await json_body()
    service, access = await _folder(name, permission)
    return service, access, body


def _identity(folder: VFolder) -> dict[str, Any]:
    """What names a folder in every answer about it (spec 6)."""
    return {"name": folder.name, "id": folder.id, "host": folder.host}


def _summary(access: Access) -> dict[str, Any]:
    return {
        **_identity(access.folder),
        "is_owner": access.is_owner,
        "permission": access.permission,
    }


def _file_entry(entry: FileEntry) -> dict[str, Any]:
    return {
        "filename": entry.name,
        "size": entry.size,
        "mode": stat.filemode(entry.mode),
        "mtime": entry.mtime,
        "ctime": entry.ctime,
        "atime": entry.atime,
    }


@blueprint.route("/folders", methods=["GET"])
@authenticated
async def list_folders() -> Response:
    accesses = await _service().accessible(current_keypair())
    # A bare array: the 18.12 client iterates the root (spec 6.3).
    return Response(json.dumps([_summary(a) for a in accesses]), mimetype="application/json")


@blueprint.route("/folders", methods=["POST"])
@blueprint.route("/folders/create", methods=["POST"])
@authenticated
@requires_running
async def create() -> tuple[dict[str, Any], int]:
    body = await json_body()
    folder = await _service().create(current_keypair(), body.get("name"), body.get("host"))
    return _identity(folder), 201


@blueprint.route("/folders/invitations/list", methods=["GET"])
@authenticated
async def list_invitations() -> dict[str, Any]:
    invitations = await _service().invitations(current_keypair())
    return {
        "invitations": [
            {
                "id": inv.id,
                "inviter": inv.inviter,
                # The CLI reads `perm`; the docs say `permission` (spec 6.13).
                "perm": inv.permission,
                "permission": inv.permission,
                "state": inv.state,
                "created_at": inv.created_at.isoformat(),
                "vfolder_id": inv.vfolder_id,
                "vfolder_name": inv.vfolder_name,
            }
            for inv in invitations
        ]
    }


@blueprint.route("/folders/invitations/accept", methods=["POST"])
@authenticated
@requires_running
async def accept_invitation() -> dict[str, Any]:
    body = await json_body()
    msg = await _service().accept(current_keypair(), body.get("inv_id"), body.get("inv_ak"))
    return {"msg": msg}


@blueprint.route("/folders/invitations/delete", methods=["DELETE"])
@authenticated
@requires_running
async def reject_invitation() -> dict[str, Any]:
    body = await json_body()
    return {"msg": await _service().reject(current_keypair(), body.get("inv_id"))}


@blueprint.route("/folders/<name>", methods=["GET"])
@authenticated
async def info(name: str) -> dict[str, Any]:
    service, access = await _folder(name, "ro")
    usage = await service.usage(access.folder)
    enforcement = await service.enforcement(access.folder)
    # Flat, as the client reads it (spec 6.5); usage and quotas are extras.
    return {
        **_summary(access),
        "numFiles": usage.file_count,
        "created": access.folder.created_at.isoformat(),
        "linked": False,
        "size_bytes": usage.size_bytes,
        "max_size_bytes": access.folder.max_size,
        "max_files": access.folder.max_files,
        # Per cap: "filesystem" (refused past it from inside sessions too) or "api"
        # (only the API's own writes are checked).
        "quota_enforced": {
            "size": enforcement.size,
            "files": enforcement.files,
            "detail": enforcement.summary(),
        },
    }


@blueprint.route("/folders/<name>", methods=["DELETE"])
@authenticated
@requires_running
async def delete(name: str) -> tuple[str, int]:
    await _service().delete(current_keypair(), name)
    return "", 204


@blueprint.route("/folders/<name>/files", methods=["GET"])
@authenticated
async def list_files(name: str) -> dict[str, Any]:
    service, access, body = await _folder_request(name, "ro")
    entries = await service.list_files(access, body.get("path"))
    return {"files": json.dumps([_file_entry(e) for e in entries])}


@blueprint.route("/folders/<name>/upload", methods=["POST"])
@authenticated
async def upload(name: str) -> tuple[str, int]:
    service, access = await _folder(name, "rw")
    # Not the ordinary body cap: a folder takes files up to its quota, streamed to disk.
    raise_body_limit(access.folder.max_size + UPLOAD_FRAMING_SLACK)
    reader = MultipartReader(
        request.body,
        boundary_of(request.headers.get("Content-Type")),
        idle_timeout=manager_context().config.manager.body_timeout,
    )
    async with contextlib.aclosing(reader.parts()) as parts:
        await service.upload(access, parts)
    return "", 201


@blueprint.route("/folders/<name>/mkdir", methods=["POST"])
@authenticated
async def mkdir(name: str) -> tuple[str, int]:
    service, access, body = await _folder_request(name, "rw")
    await service.mkdir(access, body.get("path"))
    return "", 201


@blueprint.route("/folders/<name>/delete_files", methods=["DELETE"])
@authenticated
async def delete_files(name: str) -> dict[str, Any]:
    service, access, body = await _folder_request(name, "rd")
    recursive = optional_bool(body, "recursive", False)
    await service.delete_files(access, body.get("files"), recursive)
    return {}


@blueprint.route("/folders/<name>/invite", methods=["POST"])
@authenticated
@requires_running
async def invite(name: str) -> dict[str, Any]:
    body = await json_body()
    invited = await _service().invite(
        current_keypair(), name, body.get("perm"), body.get("user_ids")
    )
    return {"invited_ids": invited}


async def _multipart_gzip(
    files: list[tuple[str, FileReader]], writer: MultipartWriter
) -> AsyncIterator[bytes]:
    try:
        for filename, reader in files:
            yield writer.head(
                [
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Encoding", "gzip"),
                    # The plain name for the client's parser, RFC 5987 for any name.
                    ("Content-Disposition", attachment(filename, plain=True)),
                ]
            )
            compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            while True:
                chunk = await reader.read(DOWNLOAD_CHUNK)
                if not chunk:
                    break
                # Compression is CPU work: off the event loop.
                compressed = await trio.to_thread.run_sync(compressor.compress, chunk)
                if compressed:
                    yield compressed
            yield compressor.flush()
        yield writer.end()
    finally:
        with trio.CancelScope(shield=True):
            for _, reader in files:
                await reader.aclose()


@blueprint.route("/folders/<name>/download", methods=["GET"])
@authenticated
async def download(name: str) -> Response:
    service, access, body = await _folder_request(name, "ro")
    files = await service.download_readers(access, body.get("files"))
    writer = MultipartWriter()
    total = sum(reader.size for _, reader in files)
    response = Response(
        _multipart_gzip(files, writer), status=200, content_type=writer.content_type
    )
    # The client's progress total, and it fails without it (spec 6.10).
    response.headers["X-TOTAL-PAYLOADS-LENGTH"] = str(total)
    # A download may take longer than any fixed response timeout.
    response.timeout = None
    return response
