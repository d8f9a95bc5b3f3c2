"""Opening the WebSocket streams of spec 5 the way the official client signs them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from testlib.sessions import Cluster
from testlib.signing import Credentials, websocket_headers


@asynccontextmanager
async def open_stream(
    cluster: Cluster, rel_url: str, creds: Credentials | None = None
) -> AsyncIterator[WebSocketConnection]:
    host = urlsplit(cluster.harness.url).netloc
    headers = websocket_headers(creds or cluster.harness.user, host, rel_url)
    url = cluster.harness.url.replace("http://", "ws://") + rel_url
    async with open_websocket_url(url, extra_headers=headers) as ws:
        yield ws


async def close_code(ws: WebSocketConnection, *, timeout: float) -> int | None:
    """Drop what the server still sends until it closes the socket; its close code."""
    with trio.fail_after(timeout):
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed as exc:
            return exc.reason.code if exc.reason else None
