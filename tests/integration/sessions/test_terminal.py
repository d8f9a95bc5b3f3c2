"""The session's terminal (spec 5.3) over the whole path: client WebSocket → manager →
agent link → runner → a real pty in the container."""

from __future__ import annotations

import base64
import json
import time

import trio
from trio_websocket import WebSocketConnection

from testlib.sessions import Cluster
from testlib.streams import open_stream


async def send_keys(ws: WebSocketConnection, keys: str) -> None:
    chars = base64.b64encode(keys.encode()).decode()
    await ws.send_message(json.dumps({"type": "stdin", "chars": chars}))


async def read_until(ws: WebSocketConnection, needle: str, *, timeout: float = 20) -> str:
    """Terminal output until `needle` appears in it."""
    seen = ""
    with trio.fail_after(timeout):
        while needle not in seen:
            frame = json.loads(await ws.get_message())
            assert frame["type"] == "out", frame
            seen += base64.b64decode(frame["data"]).decode(errors="replace")
    return seen


async def test_echo_in_a_login_shell(cluster: Cluster, session: str) -> None:
    async with open_stream(cluster, f"/stream/kernel/{session}/pty") as ws:
        await send_keys(ws, "echo $((6*7))-$TERM-$(id -un)-$PWD\n")
        out = await read_until(ws, "42-xterm-256color-work-/home/work")
    assert "42-xterm-256color-work-/home/work" in out


async def test_resize_and_ctrl_c(cluster: Cluster, session: str) -> None:
    async with open_stream(cluster, f"/stream/kernel/{session}/pty") as ws:
        await ws.send_message(json.dumps({"type": "resize", "rows": 40, "cols": 123}))
        await send_keys(ws, "echo cols=$(tput cols)\n")
        await read_until(ws, "cols=123")
        await send_keys(ws, "sleep 100; echo slept\n")
        await trio.sleep(0.5)
        started = time.monotonic()
        await send_keys(ws, "\x03")
        await send_keys(ws, "echo after-$?\n")
        out = await read_until(ws, "after-130")
        assert time.monotonic() - started < 5
        assert "\nslept" not in out  # (the echoed command line holds the word)


async def test_two_clients_share_the_screen(cluster: Cluster, session: str) -> None:
    path = f"/stream/kernel/{session}/pty"
    async with open_stream(cluster, path) as first, open_stream(cluster, path) as second:
        await send_keys(first, "echo shared-$((1+1))\n")
        await read_until(first, "shared-2")
        await read_until(second, "shared-2")


async def test_ctrl_d_respawns_the_shell(cluster: Cluster, session: str) -> None:
    async with open_stream(cluster, f"/stream/kernel/{session}/pty") as ws:
        await send_keys(ws, "echo $$ > /tmp/first-shell\n")
        await trio.sleep(0.5)
        await send_keys(ws, "\x04")
        await trio.sleep(1.0)
        await send_keys(ws, 'echo "new=$(( $$ != $(cat /tmp/first-shell) ))"\n')
        await read_until(ws, "new=1")
