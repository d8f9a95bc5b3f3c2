"""The session's terminal (spec 5.3) over the whole path: client WebSocket → manager →
agent link → runner → a real pty in the container."""

from __future__ import annotations

import base64
import json
import time

import trio
from trio_websocket import WebSocketConnection

from testlib.sessions import Cluster
from testlib.streams import close_code, open_stream


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


async def test_a_flood_holds_one_window_and_keys_get_through(
    cluster: Cluster, session: str
) -> None:
    window = cluster.config.streams.window_bytes
    link = cluster.harness.server.components.agents.link(cluster.agent.id)
    supervisor = cluster.agent.kernels[next(iter(cluster.agent.kernels))]
    async with open_stream(cluster, f"/stream/kernel/{session}/pty") as ws:
        await send_keys(ws, "yes\n")
        flooded = 0
        with trio.fail_after(20):
            while flooded < 4 << 20:
                frame = json.loads(await ws.get_message())
                flooded += len(base64.b64decode(frame["data"]))
                for stream in list(link.streams._streams.values()):
                    assert stream.flow.buffered <= window
                for end in list(supervisor.streams._streams.values()):
                    assert end.flow.buffered <= window
        started = time.monotonic()
        await send_keys(ws, "\x03echo mark-$((1+2))\n")
        await read_until(ws, "mark-3")
        assert time.monotonic() - started < 1.0


async def test_bad_messages_get_an_error_and_the_terminal_goes_on(
    cluster: Cluster, session: str
) -> None:
    async with open_stream(cluster, f"/stream/kernel/{session}/pty") as ws:
        for bad in ("not json", '{"type": "nope"}', '{"type": "stdin", "chars": "!!"}',
                    '{"type": "resize", "rows": 0, "cols": 99999}', "[1]"):
            await ws.send_message(bad)
            with trio.fail_after(10):
                while (frame := json.loads(await ws.get_message()))["type"] != "error":
                    pass
            assert frame["data"]
        await send_keys(ws, "echo still-$((2*2))\n")
        await read_until(ws, "still-4")


async def test_destroying_the_session_closes_the_terminal(
    cluster: Cluster, session: str
) -> None:
    async with open_stream(cluster, f"/stream/kernel/{session}/pty") as ws:
        await send_keys(ws, "echo up\n")
        await read_until(ws, "up")
        assert (await cluster.client.request("DELETE", f"/kernel/{session}")).status_code == 200
        assert await close_code(ws, timeout=20) == 1000
