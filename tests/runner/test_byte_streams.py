"""The runner's byte streams (terminal and tunnel connections) with the runner as a
local process: credit respected, refusals reported, bad messages harmless."""

from __future__ import annotations

import base64
import socket
import threading

from .conftest import RunnerClient


def _data(message: dict[str, object]) -> bytes:
    return base64.b64decode(str(message["data"]))


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_tcp_stream_relays_within_its_credit(py: RunnerClient) -> None:
    server, port = _echo_server()
    with server:
        py.send(
            {
                "op": "stream-open",
                "stream": 1,
                "kind": "tcp",
                "rows": 0,
                "cols": 0,
                "port": port,
                "wait": 1,
                "window": 4,
            }
        )
        assert py.recv_op("stream-opened")["stream"] == 1
        py.send(
            {"op": "stream-data", "stream": 1, "data": base64.b64encode(b"hello world").decode()}
        )
        got = _data(py.recv_op("stream-data"))
        assert got == b"hell"  # a window of 4 bytes: no more until credit
        py.send({"op": "stream-credit", "stream": 1, "bytes": 100})
        while len(got) < 11:
            got += _data(py.recv_op("stream-data"))
        assert got == b"hello world"
        py.send({"op": "stream-close", "stream": 1})
        py.send({"op": "ping", "req_id": "p"})
        assert py.recv_op("pong")["req_id"] == "p"


def test_a_port_nobody_listens_on_is_refused_after_the_wait(py: RunnerClient) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    py.send(
        {
            "op": "stream-open",
            "stream": 2,
            "kind": "tcp",
            "rows": 0,
            "cols": 0,
            "port": port,
            "wait": 0.3,
            "window": 1024,
        }
    )
    closed = py.recv_op("stream-closed", timeout=5)
    assert closed["stream"] == 2 and closed["refused"] is True
    assert "refused" in closed["reason"]


def test_the_terminal_echoes_and_bad_messages_are_harmless(py: RunnerClient) -> None:
    for bad in (
        {"op": "stream-open", "stream": "x"},
        {"op": "stream-data", "stream": 9},
        {"op": "stream-open", "stream": 5, "kind": "udp", "window": 1},
        {"op": "stream-credit", "stream": 9, "bytes": -1},
    ):
        py.send(bad)
    py.send(
        {
            "op": "stream-open",
            "stream": 3,
            "kind": "pty",
            "rows": 30,
            "cols": 100,
            "port": 0,
            "wait": 0,
            "window": 1 << 20,
        }
    )
    assert py.recv_op("stream-opened")["stream"] == 3
    keys = base64.b64encode(b"echo $((40+2)) $(tput cols)\n").decode()
    py.send({"op": "stream-data", "stream": 3, "data": keys})
    seen = b""
    while b"42 100" not in seen:
        message = py.recv_op("stream-data")
        if message["stream"] == 3:
            seen += _data(message)
