"""``/stream/kernel/:id/pty``: the session's terminal (spec 5.3).

TEXT frames of JSON both ways. From the client: ``stdin`` (base64 keystrokes, not
counted), ``resize``, ``ping`` (the idle timer), ``restart`` (the session restarts as
spec 4.5 and the socket carries on with the new terminal); to it: ``out`` (base64) and
``error``. Every client of a session sees the same terminal. The socket closes when
the session ends (1000), the client stops reading (1008), or it floods non-keystroke
messages past its rate limit (1008).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import attrs
import trio
from quart import Blueprint, websocket
from quart.wrappers import Websocket

from crucible import errors
from crucible.api.context import manager_context
from crucible.api.stream_pumps import (
    ClientTooSlow,
    count_client_message,
    pump_to_client,
    requested_service,
    serve_stream,
    session_streams,
    stream_session,
)
from crucible.cluster.streams import LinkStream
from crucible.keypairs import Keypair
from crucible.protocol.stream_flow import StreamEnded
from crucible.protocol.streams import valid_size
from crucible.sessions.model import Session
from crucible.sessions.streams import SessionStreams
from crucible.validation import parse_json

blueprint = Blueprint("terminal", __name__)

#: The size a terminal starts with, until the client's first resize.
DEFAULT_SIZE = (24, 80)
#: Seconds a restart may take before the socket gives up on the new terminal.
RESTART_WAIT = 180.0


class _BadMessage(Exception):
    pass


@attrs.define(eq=False)
class TerminalClient:
    """One client's socket on the session's terminal; `stream` is replaced on restart."""

    ws: Websocket
    session: Session
    keypair: Keypair
    stream: LinkStream
    streams: SessionStreams
    #: The last size the client asked for: a restarted terminal opens with it.
    size: tuple[int, int] = DEFAULT_SIZE
    #: Set while a restart is under way: `_down` waits for the new stream.
    _restarted: trio.Event | None = attrs.field(default=None, init=False)

    async def serve(self) -> tuple[int, str]:
        """Pump both ways until one side ends; the close code and reason."""
        outcome: list[tuple[int, str]] = []
        async with trio.open_nursery() as nursery:

            async def run(side: Any) -> None:
                outcome.append(await side())
                nursery.cancel_scope.cancel()

            nursery.start_soon(run, self._down)
            nursery.start_soon(run, self._up)
        await self.stream.aclose()
        return outcome[0] if outcome else (1000, "")

    async def _send(self, message: dict[str, str]) -> None:
        await self.ws.send(json.dumps(message))

    async def _down(self) -> tuple[int, str]:
        timeout = manager_context().config.streams.client_send_timeout

        async def out(data: bytes) -> None:
            await self._send({"type": "out", "data": base64.b64encode(data).decode()})

        while True:
            stream = self.stream
            try:
                await pump_to_client(stream, out, timeout=timeout)
            except ClientTooSlow as exc:
                return 1008, str(exc)
            if self._restarted is None:
                ending = stream.flow.ending
                return 1000, ending.reason if ending else "the terminal ended"
            with trio.move_on_after(RESTART_WAIT):
                await self._restarted.wait()
            if self.stream is stream:
                return 1011, "the terminal did not come back after the restart"

    async def _up(self) -> tuple[int, str]:
        limits = manager_context().config.limits
        while True:
            raw = await self.ws.receive()
            try:
                message = parse_json(raw, max_depth=limits.max_json_depth, where="a message")
                await self._handle(message)
            except (_BadMessage, errors.InvalidAPIParameters) as exc:
                await self._send({"type": "error", "data": str(exc)})
            except errors.RateLimitExceeded:
                return 1008, "rate limit exceeded"
            except errors.ProblemError as exc:
                await self._send({"type": "error", "data": exc.detail or exc.title})
                return 1011, exc.title
            except StreamEnded:
                pass  # the terminal is going (a restart, the end): _down decides

    async def _handle(self, message: object) -> None:
        if not isinstance(message, dict):
            raise _BadMessage("a message must be a JSON object with a 'type'")
        kind = message.get("type")
        if kind == "stdin":
            chars = message.get("chars")
            try:
                data = base64.b64decode(chars if isinstance(chars, str) else "", validate=True)
            except (binascii.Error, ValueError):
                raise _BadMessage("stdin 'chars' must be base64") from None
            await self.stream.send(data)
            return
        count_client_message(self.session, self.keypair)
        if kind == "resize":
            rows, cols = message.get("rows"), message.get("cols")
            if not (type(rows) is int and type(cols) is int and valid_size(rows, cols)):
                raise _BadMessage("resize needs integer 'rows' and 'cols' between 1 and 1000")
            self.size = (rows, cols)
            await self.stream.resize(rows, cols)
        elif kind == "ping":
            pass  # counted above: the idle timer is reset
        elif kind == "restart":
            await self._restart()
        else:
            raise _BadMessage(f"unknown message type {kind!r}")

    async def _restart(self) -> None:
        sessions = manager_context().sessions
        self._restarted = trio.Event()
        old = self.stream
        try:
            await sessions.restart(self.session)
            await old.aclose("the session restarted")
            self.session = await sessions.get_live(self.session.access_key, self.session.token)
            rows, cols = self.size
            self.stream = await self.streams.open_terminal(self.session, rows=rows, cols=cols)
        finally:
            restarted, self._restarted = self._restarted, None
            restarted.set()


@blueprint.websocket("/stream/kernel/<token>/pty")
async def stream_pty(token: str) -> None:
    session, keypair = await stream_session(token)
    service = websocket.args.get("service")
    if service:
        # An image may declare several terminals; this one serves its `pty` ports.
        requested_service(session, service, "pty")
    streams = session_streams()
    rows, cols = DEFAULT_SIZE
    stream = await streams.open_terminal(session, rows=rows, cols=cols)
    await serve_stream(
        stream, lambda ws: TerminalClient(ws, session, keypair, stream, streams).serve()
    )
