"""The agent's side of the kernel-runner socket (docs/internals.md, "Agent ↔ kernel runner").

Each message is a 4-byte big-endian length and a UTF-8 JSON object.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import trio

#: Refuse frames larger than this from a runner: a hostile kernel must not make the
#: agent allocate without bound.
MAX_FRAME_BYTES = 16 * 1024 * 1024
_HEADER = struct.Struct(">I")
#: How long one message to the runner may take to go out.
SEND_TIMEOUT = 30.0


class RunnerGone(Exception):
    """The runner closed its socket or sent something that breaks the protocol."""


class RunnerConnection:
    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._send_lock = trio.Lock()

    @classmethod
    async def connect(
        cls, path: Path, *, timeout: float
    ) -> tuple[RunnerConnection, dict[str, Any]]:
        """Connect once the runner listens, and read its ``hello``.

        The socket appears only after the container's runner has started, so this
        retries until `timeout`.
        """
        with trio.fail_after(timeout):
            while True:
                try:
                    stream = await trio.open_unix_socket(str(path))
                    break
                except OSError:
                    await trio.sleep(0.02)
            conn = cls(stream)
            try:
                hello = await conn.receive()
            except BaseException:
                await conn.aclose()
                raise
        if hello.get("op") != "hello":
            await conn.aclose()
            raise RunnerGone(f"expected hello from the runner, got {hello.get('op')!r}")
        return conn, hello

    async def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode()
        async with self._send_lock:
            try:
                with trio.fail_after(SEND_TIMEOUT):
                    await self._stream.send_all(_HEADER.pack(len(data)) + data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise RunnerGone("the runner socket is closed") from exc
            except trio.TooSlowError as exc:
                # The runner reads its socket all the time; one that stops is broken.
                raise RunnerGone("the runner stopped reading its socket") from exc

    async def _read_exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            try:
                chunk = await self._stream.receive_some(max(65536, n - len(self._buffer)))
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise RunnerGone("the runner socket broke") from exc
            if not chunk:
                raise RunnerGone("the runner closed its socket")
            self._buffer += chunk
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def receive(self) -> dict[str, Any]:
        (length,) = _HEADER.unpack(await self._read_exactly(_HEADER.size))
        if length > MAX_FRAME_BYTES:
            raise RunnerGone(f"the runner sent an oversized frame ({length} bytes)")
        try:
            message = json.loads(await self._read_exactly(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RunnerGone("the runner sent a malformed frame") from exc
        if not isinstance(message, dict):
            raise RunnerGone("the runner sent a frame that is not an object")
        return message

    async def aclose(self) -> None:
        await self._stream.aclose()
