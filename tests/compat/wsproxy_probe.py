"""Tunnels an HTTP request with the official client's own tunnel code (18.12.3's
``WSProxy``, started as ``backend.ai app SESSION APP`` starts it, minus the ``loop=``
argument that keeps that command from starting on Python 3.10+) and reports what came
back as one JSON line. Run by the reference client's Python.

Usage: ``wsproxy_probe.py TOKEN APP PATH`` (endpoint and keys from BACKEND_*).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from ai.backend.client.cli.app import WSProxy
from ai.backend.client.session import AsyncSession


async def probe(token: str, app: str, path: str) -> dict[str, Any]:
    async with AsyncSession() as api_session:

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await WSProxy(api_session, token, app, "http", reader, writer).run()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        answers = []
        for _ in range(2):  # one WebSocket per connection, twice
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
            await writer.drain()
            answers.append((await asyncio.wait_for(reader.read(-1), 30)).decode(errors="replace"))
            writer.close()
        server.close()
        await server.wait_closed()
    return {"answers": answers}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(probe(*sys.argv[1:4]))))
