"""Protocol robustness: bad frames, unknown ops, pings."""

from __future__ import annotations

import struct

from crucible.agent.runner import framing

from .conftest import RunnerClient


def test_ping(py: RunnerClient) -> None:
    py.send({"op": "ping", "req_id": "p1"})
    assert py.recv() == {"op": "pong", "req_id": "p1"}


def test_bad_frames_get_errors_and_the_runner_survives(py: RunnerClient) -> None:
    py.sock.sendall(struct.pack(">I", 5) + b"nope!")
    assert py.recv()["op"] == "error"
    py.sock.sendall(struct.pack(">I", 2) + b"[]")
    assert py.recv()["op"] == "error"
    py.send({"op": "launch-missiles"})
    assert "unknown op" in py.recv()["message"]
    py.send({"op": "execute", "run_id": "bad", "mode": "sideways", "code": ""})
    assert py.recv()["op"] == "error"
    assert py.recv() == {"op": "finished", "run_id": "bad", "exit_code": -1}
    py.send({"op": "execute", "mode": "query", "code": ""})
    assert py.recv()["op"] == "error"
    assert py.run("print('still fine')").stdout == "still fine\n"


def test_oversized_frame_is_refused_and_skipped(py: RunnerClient) -> None:
    size = framing.MAX_FRAME_BYTES + 1
    py.sock.sendall(struct.pack(">I", size))
    chunk = b"x" * (1024 * 1024)
    sent = 0
    while sent < size:
        part = chunk[: size - sent]
        py.sock.sendall(part)
        sent += len(part)
    error = py.recv()
    assert error["op"] == "error" and "refused" in error["message"]
    py.send({"op": "ping", "req_id": "after"})
    assert py.recv() == {"op": "pong", "req_id": "after"}
