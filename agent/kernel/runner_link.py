"""The agent's side of the kernel-runner socket (docs/internals.md, "Agent ↔ kernel runner").

The agent listens and the runner dials: the socket lies in the kernel's ipc directory,
which the agent owns and the container sees read-only, so nothing the kernel writes
ever decides where the agent connects (issue 9, finding 1: a runner-side socket could
be replaced by a symlink to another kernel's). Every accepted connection is checked
against the kernel's own records of the peer (`crucible.agent.kernel.runner_peer`)
before one byte of it is read.

Each message is a 4-byte big-endian length and a UTF-8 JSON object.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import stat
import struct
from pathlib import Path
from typing import Any

import trio

from crucible.agent.kernel.runner_peer import (
    PeerRefused,
    check_runner_peer,
    peer_credentials,
    peer_pidfd,
)

log = logging.getLogger(__name__)

#: The socket's name in a kernel's ipc directory (``/opt/crucible/ipc`` inside).
SOCKET_NAME = "agent.sock"
#: The runner protocol this agent speaks (``hello``'s ``protocol``).
PROTOCOL = 2

#: Refuse frames larger than this from a runner: a hostile kernel must not make the
#: agent allocate without bound.
MAX_FRAME_BYTES = 16 * 1024 * 1024
_HEADER = struct.Struct(">I")


class RunnerGone(Exception):
    """The runner closed its socket or sent something that breaks the protocol."""


class RunnerConnection:
    def __init__(self, stream: trio.SocketStream, *, send_timeout: float) -> None:
        self._stream = stream
        #: How long one message to the runner may take to go out.
        self._send_timeout = send_timeout
        self._buffer = bytearray()
        self._send_lock = trio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode()
        async with self._send_lock:
            try:
                with trio.fail_after(self._send_timeout):
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


class RunnerListener:
    """The agent's listening socket for one kernel, in a directory only the agent writes.

    Binding it unlinks what a previous agent (or the previous container of a restarted
    session) left there: safe, because nobody else can write in that directory, which
    `_bind` checks before anything else.
    """

    def __init__(self, sock: trio.socket.SocketType, path: Path, *, send_timeout: float) -> None:
        self._sock = sock
        self.path = path
        #: Of the connection it accepts (``agent.runner_send_timeout``).
        self._send_timeout = send_timeout

    @classmethod
    async def bind(cls, ipc_dir: Path, *, send_timeout: float) -> RunnerListener:
        raw = await trio.to_thread.run_sync(_bind, ipc_dir)
        return cls(
            trio.socket.from_stdlib_socket(raw), ipc_dir / SOCKET_NAME, send_timeout=send_timeout
        )

    async def accept(
        self, container_id: str, *, timeout: float
    ) -> tuple[RunnerConnection, dict[str, Any]]:
        """The runner of `container_id` once it dialled in, and its ``hello``.

        Connections from anything else (user code in the same container, a process of
        another container that reached this socket) are closed unread and logged.
        Raises ``trio.TooSlowError`` after `timeout`, `RunnerGone` for a runner that
        does not speak this protocol.
        """
        with trio.fail_after(timeout):
            while True:
                sock, _ = await self._sock.accept()
                try:
                    await _authenticate(sock, container_id)
                except PeerRefused as exc:
                    log.warning("%s: refused a connection: %s", self.path, exc)
                    sock.close()
                    continue
                conn = RunnerConnection(trio.SocketStream(sock), send_timeout=self._send_timeout)
                try:
                    hello = await conn.receive()
                except BaseException:
                    await conn.aclose()
                    raise
                if hello.get("op") != "hello" or hello.get("protocol") != PROTOCOL:
                    await conn.aclose()
                    raise RunnerGone(
                        f"expected a protocol {PROTOCOL} hello from the runner, got {hello!r:.200}"
                    )
                return conn, hello

    def close(self) -> None:
        """Stop listening (the socket file stays until the next `bind`)."""
        self._sock.close()


class AcceptedRunner:
    """A runner that has dialled in and been checked already (a warm pool's kernel):
    stands in for its listener, so a supervisor takes it over as if it had just
    accepted it."""

    def __init__(self, conn: RunnerConnection, hello: dict[str, Any]) -> None:
        self._conn = conn
        self._hello = hello

    async def accept(
        self, container_id: str, *, timeout: float
    ) -> tuple[RunnerConnection, dict[str, Any]]:
        return self._conn, self._hello

    def close(self) -> None:
        """Nothing listens: the connection is the supervisor's now."""


#: Where a supervisor gets its runner's connection from.
RunnerSource = RunnerListener | AcceptedRunner


async def _authenticate(sock: trio.socket.SocketType, container_id: str) -> None:
    pid, uid = peer_credentials(sock.fileno())
    pidfd = peer_pidfd(sock.fileno())
    try:
        await trio.to_thread.run_sync(check_runner_peer, pid, uid, pidfd, container_id)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _bind(ipc_dir: Path) -> socket.socket:
    """Listen on ``ipc_dir/agent.sock``, after checking nobody else can write there."""
    fd = os.open(ipc_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise PermissionError(
                errno.EPERM, f"{ipc_dir} is writable by others than the agent; not using it"
            )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(SOCKET_NAME, dir_fd=fd)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Through the directory descriptor: the path is resolved by the kernel from
            # the directory we just checked, not from its name again.
            path = f"/proc/self/fd/{fd}/{SOCKET_NAME}"
            sock.bind(path)
            # The runner (uid 1000) needs write permission on the socket to connect.
            os.chmod(path, 0o666)
            sock.listen(8)
        except BaseException:
            sock.close()
            raise
    finally:
        os.close(fd)
    return sock
