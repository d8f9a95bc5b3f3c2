"""Opening the WebSocket streams of spec 5 the way the official client signs them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from trio_websocket import WebSocketConnection, open_websocket_url

from testlib.sessions import Cluster
from testlib.signing import Credentials, authorization, client_date


def _signed_headers(creds: Credentials, host: str, rel_url: str) -> list[tuple[bytes, bytes]]:
    raw_date = client_date()
    header = authorization(
        creds, method="GET", rel_url=rel_url, raw_date=raw_date, host=host, content_type=""
    )
    return [
        (b"Date", raw_date.encode()),
        (b"X-BackendAI-Version", b"v4.20181215"),
        (b"Authorization", header.encode()),
    ]


@asynccontextmanager
async def open_stream(
    cluster: Cluster, rel_url: str, creds: Credentials | None = None
) -> AsyncIterator[WebSocketConnection]:
    host = urlsplit(cluster.harness.url).netloc
    headers = _signed_headers(creds or cluster.harness.user, host, rel_url)
    url = cluster.harness.url.replace("http://", "ws://") + rel_url
    async with open_websocket_url(url, extra_headers=headers) as ws:
        yield ws
