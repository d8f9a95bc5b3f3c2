"""Calling /folders the way the official client does (multipart uploads, gzip parts)."""

from __future__ import annotations

import gzip
import json
import re
import secrets
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import quote

import httpx

from testlib.signing import SigningClient


def multipart(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A body as the 18.12 client builds it: parts `src`, percent-encoded names."""
    boundary = secrets.token_hex(12)
    out = bytearray()
    for name, data in files.items():
        out += (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="src"; filename="{quote(name, safe="")}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


async def create(client: SigningClient, name: str, host: Any = None) -> httpx.Response:
    return await client.post("/folders", json={"name": name, "host": host})


async def upload(client: SigningClient, name: str, files: dict[str, bytes]) -> httpx.Response:
    body, content_type = multipart(files)
    return await client.post(f"/folders/{name}/upload", content=body, content_type=content_type)


async def ls(client: SigningClient, name: str, path: str = ".") -> httpx.Response:
    return await client.get(f"/folders/{name}/files", json={"path": path})


def names(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [entry["filename"] for entry in json.loads(response.json()["files"])]


async def download(client: SigningClient, name: str, files: list[str]) -> httpx.Response:
    return await client.get(f"/folders/{name}/download", json={"files": files})


def parts(response: httpx.Response) -> list[tuple[str, bytes]]:
    """``(filename, uncompressed bytes)`` per part, checking the client's requirements."""
    assert response.status_code == 200, response.text
    content_type = response.headers["Content-Type"]
    assert content_type.startswith("multipart/mixed")
    boundary_param = re.search(r"boundary=([^;]+)", content_type)
    assert boundary_param is not None, content_type
    boundary = boundary_param[1]
    raw = response.content
    found = []
    for chunk in raw.split(f"--{boundary}".encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, body = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        headers = BytesParser(policy=HTTP).parsebytes(head + b"\r\n\r\n")
        assert headers["Content-Encoding"] == "gzip"
        filename = headers.get_filename()
        assert filename is not None, head
        found.append((filename, gzip.decompress(body.removesuffix(b"\r\n"))))
    total = int(response.headers["X-TOTAL-PAYLOADS-LENGTH"])
    assert total == sum(len(data) for _, data in found)
    return found


async def invite(
    client: SigningClient, name: str, user_ids: list[str], perm: str | None = "rw"
) -> httpx.Response:
    return await client.post(f"/folders/{name}/invite", json={"perm": perm, "user_ids": user_ids})


async def share(
    owner: SigningClient, grantee: SigningClient, grantee_user: str, name: str, perm: str
) -> None:
    """Invite `grantee_user` with `perm` and accept with `grantee`'s access key."""
    response = await invite(owner, name, [grantee_user], perm)
    assert response.status_code == 200, response.text
    assert response.json() == {"invited_ids": [grantee_user]}
    listed = await grantee.get("/folders/invitations/list")
    assert listed.status_code == 200, listed.text
    (inv,) = listed.json()["invitations"]
    assert grantee.creds is not None
    accepted = await grantee.post(
        "/folders/invitations/accept",
        json={"inv_id": inv["id"], "inv_ak": grantee.creds.access_key},
    )
    assert accepted.status_code == 200, accepted.text
