"""A small blocking WebSocket client (RFC 6455), standard library only.

Enough to talk to Jupyter's kernel channels: text and binary messages, fragmented or not,
pings answered, close handled; no extensions (none is offered, so the server sends plain
frames). Loopback benchmarks only: no TLS. Every read waits at most the socket timeout.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
from collections.abc import Mapping

_ACCEPT_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_OP_CONTINUATION, _OP_TEXT, _OP_BINARY = 0x0, 0x1, 0x2
_OP_CLOSE, _OP_PING, _OP_PONG = 0x8, 0x9, 0xA
#: A message larger than this is a broken peer, not a benchmark reply.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
_MAX_HEADER_LINES = 100


class WebSocketError(ConnectionError):
    """The peer broke the protocol or closed the connection."""


class WebSocket:
    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        quickack: bool = False,
    ) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        # Small request/answer exchanges: without this Nagle's algorithm and delayed ACKs
        # add tens of milliseconds to some round trips, which would be measured as the
        # server's latency.
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._quickack = quickack
        self._buffer = bytearray()
        self._open = False  # a close frame only after a handshake that succeeded
        try:
            self._handshake(host, port, path, headers or {})
        except BaseException:
            self.close()
            raise

    def _handshake(self, host: str, port: int, path: str, headers: Mapping[str, str]) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        self._sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status = self._read_line()
        answer: dict[str, str] = {}
        for _ in range(_MAX_HEADER_LINES):
            line = self._read_line().strip()
            if not line:
                break
            name, _, value = line.partition(":")
            answer[name.strip().lower()] = value.strip()
        else:
            raise WebSocketError("handshake answer has too many header lines")
        if status.split(" ", 2)[1:2] != ["101"]:
            raise WebSocketError(f"handshake refused: {status.strip()!r}")
        expected = base64.b64encode(hashlib.sha1((key + _ACCEPT_GUID).encode()).digest())
        if answer.get("sec-websocket-accept", "").encode() != expected:
            raise WebSocketError("handshake answer has a wrong Sec-WebSocket-Accept")
        self._open = True

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        mask = os.urandom(4)  # clients must mask (RFC 6455 5.3)
        # XOR with the repeated mask, done on whole integers rather than byte by byte.
        repeated = (mask * (length // 4 + 1))[:length]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
            length, "big"
        )
        self._sock.sendall(header + mask + masked)

    def send_text(self, text: str) -> None:
        self._send_frame(_OP_TEXT, text.encode())

    def send_binary(self, data: bytes) -> None:
        self._send_frame(_OP_BINARY, data)

    def _fill(self) -> None:
        if self._quickack:
            # Linux leaves quick-ACK mode on its own: ask again before every read, so each
            # segment that arrives is acknowledged at once rather than up to 40 ms later.
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = self._sock.recv(65536)
        if not chunk:
            raise WebSocketError("connection closed")
        self._buffer += chunk

    def _read_exact(self, count: int) -> bytes:
        while len(self._buffer) < count:
            self._fill()
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def _read_line(self) -> str:
        """One CRLF-terminated handshake line, at most 64 KiB."""
        while (end := self._buffer.find(b"\n")) < 0:
            if len(self._buffer) > 65536:
                raise WebSocketError("handshake line over 64 KiB")
            self._fill()
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        return line.decode("latin-1")

    def _read_frame(self) -> tuple[bool, int, bytes]:
        first, second = self._read_exact(2)
        if first & 0x70:
            raise WebSocketError("frame with reserved bits set (no extension was agreed)")
        if second & 0x80:
            raise WebSocketError("server frames must not be masked")
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read_exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read_exact(8))
        if length > MAX_MESSAGE_BYTES:
            raise WebSocketError(f"frame of {length} bytes")
        return bool(first & 0x80), first & 0x0F, self._read_exact(length)

    def receive(self) -> str | bytes:
        """The next message: str for text, bytes for binary."""
        parts: list[bytes] = []
        kind = None
        size = 0
        while True:
            fin, opcode, payload = self._read_frame()
            if opcode == _OP_PING:
                self._send_frame(_OP_PONG, payload)
                continue
            if opcode == _OP_PONG:
                continue
            if opcode == _OP_CLOSE:
                self._send_close()
                raise WebSocketError("the server closed the WebSocket")
            if opcode in (_OP_TEXT, _OP_BINARY):
                if kind is not None:
                    raise WebSocketError("new message inside a fragmented one")
                kind = opcode
            elif opcode != _OP_CONTINUATION or kind is None:
                raise WebSocketError(f"unexpected opcode {opcode:#x}")
            size += len(payload)
            if size > MAX_MESSAGE_BYTES:
                raise WebSocketError(f"message over {MAX_MESSAGE_BYTES} bytes")
            parts.append(payload)
            if fin:
                data = b"".join(parts)
                return data.decode() if kind == _OP_TEXT else data

    def _send_close(self) -> None:
        if not self._open:
            return
        self._open = False
        try:
            self._send_frame(_OP_CLOSE, struct.pack("!H", 1000))
        except OSError:
            pass

    def close(self) -> None:
        self._send_close()
        self._sock.close()
