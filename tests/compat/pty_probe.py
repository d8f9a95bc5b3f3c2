"""Drives a session's terminal with the official client SDK 18.12.3 (``Kernel.stream_pty``)
and reports what it saw as one JSON line. Run by the reference client's Python.

Usage: ``pty_probe.py TOKEN`` (endpoint and keys from the BACKEND_* variables). The
SDK's own ``StreamPty.resize()``/``restart()`` cannot work (they use ``self.ws``, a slot
the class never sets), so resize and restart are sent as the messages those methods
would send, through the SDK's socket.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from typing import Any

import aiohttp
from ai.backend.client.session import AsyncSession


async def keys(pty: Any, text: str) -> None:
    chars = base64.b64encode(text.encode()).decode()
    await pty.send_str(json.dumps({"type": "stdin", "chars": chars}))


async def until(pty: Any, needle: str, timeout: float = 20.0) -> tuple[str, float]:
    """Output until `needle` appears; and how long that took."""
    seen, started = "", time.monotonic()
    while needle not in seen:
        msg = await asyncio.wait_for(pty.__anext__(), timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"unexpected frame {msg.type}: {msg.data!r}")
        frame = json.loads(msg.data)
        if frame["type"] == "out":
            seen = (seen + base64.b64decode(frame["data"]).decode(errors="replace"))[-100000:]
    return seen, time.monotonic() - started


async def drain(pty: Any, seconds: float) -> int:
    """Read whatever comes for `seconds`; the bytes of output."""
    total, deadline = 0, time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = await asyncio.wait_for(pty.__anext__(), left)
        except TimeoutError:
            break
        total += len(base64.b64decode(json.loads(msg.data)["data"]))
    return total


async def probe(token: str) -> dict[str, Any]:
    report: dict[str, Any] = {}
    async with AsyncSession() as session:
        kernel = await session.Kernel.get_or_create("python", client_token=token)
        async with kernel.stream_pty() as pty, kernel.stream_pty() as other:
            await keys(pty, "echo hi-$((6*7))\n")
            report["echo"] = "hi-42" in (await until(pty, "hi-42"))[0]
            report["shared"] = "hi-42" in (await until(other, "hi-42"))[0]
            await pty.send_str(json.dumps({"type": "resize", "rows": 33, "cols": 99}))
            await keys(pty, "echo cols=$(tput cols)\n")
            report["resized"] = "cols=99" in (await until(pty, "cols=99"))[0]
            await keys(pty, "sleep 100\n")
            await asyncio.sleep(0.5)
            await keys(pty, "\x03echo rc=$?\n")
            _, took = await until(pty, "rc=130")
            report["interrupted_in"] = took
            await other.close()
            # A flood: the client keeps reading; a keystroke still gets through fast.
            await keys(pty, "yes\n")
            report["flood_bytes"] = await drain(pty, 3.0)
            await keys(pty, "\x03")
            await keys(pty, "echo mark-$((1+2))\n")
            _, took = await until(pty, "mark-3")
            report["keystroke_during_flood"] = took
            await pty.send_str(json.dumps({"type": "restart"}))
            await asyncio.sleep(1.0)
            await keys(pty, "echo back-$((2+3))\n")
            report["restarted"] = "back-5" in (await until(pty, "back-5", timeout=60))[0]
        await kernel.destroy()
    return report


if __name__ == "__main__":
    print(json.dumps(asyncio.run(probe(sys.argv[1]))))
