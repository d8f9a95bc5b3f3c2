"""Session file uploads as the official client sends them (spec 4.9)."""

from __future__ import annotations

import io
import secrets
from collections.abc import AsyncIterator, Sequence
from urllib.parse import quote

import trio

from testlib.sessions import Cluster


def multipart(
    files: list[tuple[str, bytes]], *, extended: bool = False, boundary: str | None = None
) -> tuple[bytes, str]:
    """A body as the 18.12 client builds it: parts named ``src``, names percent-encoded
    with no safe characters (``/`` → ``%2F``); `extended` adds ``filename*`` as older
    HTTP stacks do. Returns the body and its Content-Type."""
    boundary = boundary or secrets.token_hex(16)
    out = io.BytesIO()
    for name, data in files:
        encoded = quote(name, safe="")
        disposition = f'form-data; name="src"; filename="{encoded}"'
        if extended:
            disposition += f"; filename*=utf-8''{encoded}"
        out.write(f"--{boundary}\r\n".encode())
        out.write(f"Content-Disposition: {disposition}\r\n".encode())
        out.write(b"Content-Type: application/octet-stream\r\n\r\n")
        out.write(data)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


async def upload(
    cluster: Cluster, token: str, files: list[tuple[str, bytes]], *, extended: bool = False
) -> int:
    """Upload `files` (name, content) into session `token`; the response status.

    A refusal must be a problem document with a title (the CLI prints it)."""
    body, content_type = multipart(files, extended=extended)
    response = await cluster.client.post(
        f"/kernel/{token}/upload", content=body, content_type=content_type
    )
    if response.status_code != 204:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["title"], response.text
    return response.status_code


async def in_pieces(body: bytes, cuts: Sequence[int], pause: float = 0.2) -> AsyncIterator[bytes]:
    """`body` sent in pieces ending at the offsets `cuts`, pausing between them so that
    the server reads each piece on its own (a chunked body, as a streaming client sends)."""
    start = 0
    for end in [*cuts, len(body)]:
        yield body[start:end]
        start = end
        await trio.sleep(pause)
