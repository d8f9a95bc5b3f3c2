"""WebSocket execution and session events (spec 5.1, 5.2, 5.4)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionRejected, WebSocketConnection

from testlib.sessions import Cluster, execute, stream_text
from testlib.signing import Credentials
from testlib.streams import open_stream


async def _frames_until_final(ws: WebSocketConnection, inputs: list[str]) -> list[dict[str, Any]]:
    frames = []
    with trio.fail_after(30):
        while True:
            frame = json.loads(await ws.get_message())
            frames.append(frame)
            if frame["status"] == "waiting-input":
                await ws.send_message(inputs.pop(0))
            if frame["status"] in ("finished", "exec-timeout", "error"):
                return frames


async def test_stream_execute_with_input(cluster: Cluster, session: str) -> None:
    async with open_stream(cluster, f"/stream/kernel/{session}/execute") as ws:
        await ws.send_message(
            json.dumps({"mode": "query", "code": "print('hi', input('who? '))", "options": {}})
        )
        frames = await _frames_until_final(ws, ["there"])
    assert all("runId" not in f and isinstance(f["console"], list) for f in frames)
    assert frames[-1]["status"] == "finished"
    assert any(f["status"] == "waiting-input" for f in frames)
    assert "hi there" in stream_text(frames)


async def test_stream_bad_first_frame_gets_error(cluster: Cluster, session: str) -> None:
    async with open_stream(cluster, f"/stream/kernel/{session}/execute") as ws:
        await ws.send_message(json.dumps({"mode": "input", "code": "x"}))
        frame = json.loads(await ws.get_message())
    assert frame["status"] == "error"
    assert frame["msg"]


async def test_stream_handshake_is_authenticated(cluster: Cluster, session: str) -> None:
    wrong = Credentials(cluster.harness.user.access_key, "x" * 40)
    with pytest.raises(ConnectionRejected) as caught:
        async with open_stream(cluster, f"/stream/kernel/{session}/execute", wrong):
            pass
    assert caught.value.status_code == 401
    assert json.loads(caught.value.body or b"{}")["type"].endswith("/auth-failed")


async def test_stream_unknown_session_is_404(cluster: Cluster) -> None:
    with pytest.raises(ConnectionRejected) as caught:
        async with open_stream(cluster, "/stream/kernel/nosuchsession/execute"):
            pass
    assert caught.value.status_code == 404
    assert json.loads(caught.value.body or b"{}")["type"].endswith("/kernel-not-found")


async def test_disconnect_interrupts_the_run(cluster: Cluster, session: str) -> None:
    async with open_stream(cluster, f"/stream/kernel/{session}/execute") as ws:
        code = "import time\nfor i in range(600):\n    print(i, flush=True)\n    time.sleep(0.1)"
        await ws.send_message(json.dumps({"mode": "query", "code": code, "options": {}}))
        await ws.get_message()
    # The abandoned run was interrupted, so the next one starts right away.
    with trio.fail_after(20):
        assert stream_text(await execute(cluster.client, session, "print('next')")) == "next\n"


async def test_events_report_termination(cluster: Cluster, session: str) -> None:
    async with open_stream(cluster, f"/stream/kernel/{session}/events") as ws:
        destroyed = await cluster.client.request("DELETE", f"/kernel/{session}")
        assert destroyed.status_code == 200
        with trio.fail_after(10):
            event = json.loads(await ws.get_message())
    assert event == {"name": "terminated", "reason": "user-requested"}


@pytest.mark.parametrize("kind", ["httpproxy?app=nosuchapp", "tcpproxy?app=nosuchapp"])
async def test_undeclared_apps_are_not_found(cluster: Cluster, session: str, kind: str) -> None:
    with pytest.raises(ConnectionRejected) as caught:
        async with open_stream(cluster, f"/stream/kernel/{session}/{kind}"):
            pass
    assert caught.value.status_code == 404
    assert json.loads(caught.value.body or b"{}")["type"].endswith("/app-not-found")
