"""Request bodies with flow control, so an upload streams to disk instead of to RAM.

Quart's body object accepts every chunk the server hands it, however slowly the handler
consumes them, and checks its size cap against the *buffered* bytes only. For a 1 GiB
upload into a folder that means up to 1 GiB in the manager's memory. Here the task
feeding the body pauses (and Hypercorn, whose queue to the app is bounded, stops
reading the socket) while more than `HIGH_WATER` bytes wait unconsumed, unless the
handler asked for the whole body at once (``await request.body``: ordinary JSON
endpoints, capped by ``manager.max_body_bytes``).

The size cap counts every byte received, and an over-long ``Content-Length`` is judged
when the handler first reads, so a handler may raise the cap beforehand
(`raise_body_limit`): folder uploads are bounded by the folder's quota instead.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import trio
from quart import request
from quart_trio.asgi import TrioASGIHTTPConnection
from quart_trio.wrappers.request import TrioBody, TrioRequest
from werkzeug.exceptions import RequestEntityTooLarge

#: Unconsumed bytes at which the producer waits for the handler.
HIGH_WATER = 1024 * 1024
#: The app's setting (``manager.discard_body_timeout``): how long the rest of a body is
#: swallowed after an early answer (see handle_request).
DISCARD_TIMEOUT_KEY = "CRUCIBLE_DISCARD_TIMEOUT"


class FlowControlledBody(TrioBody):
    def __init__(self, expected_content_length: int | None, max_content_length: int | None):
        super().__init__(expected_content_length, max_content_length)
        # Judged lazily (see the module docstring), not at construction.
        self._must_raise = None
        self._expected = expected_content_length
        self._received = 0
        self._whole = False
        self._room = trio.Event()
        self.discarding = False
        #: Set when the last byte of the body has arrived (whatever became of it).
        self.ended = trio.Event()

    def discard(self) -> None:
        """Drop whatever still arrives (the handler has answered)."""
        self.discarding = True
        self._data.clear()
        self._wake()

    def set_limit(self, max_content_length: int | None) -> None:
        self._max_content_length = max_content_length

    @property
    def limit(self) -> int | None:
        return self._max_content_length

    def _over_limit(self) -> bool:
        limit = self._max_content_length
        return limit is not None and (self._expected or 0) > limit

    def _wake(self) -> None:
        self._room.set()

    def _must_wait(self) -> bool:
        return (
            len(self._data) >= HIGH_WATER
            and not self._whole
            and not self.discarding
            and not self._complete.is_set()
            and self._must_raise is None
        )

    async def wait_for_room(self) -> None:
        while self._must_wait():
            self._room = trio.Event()
            await self._room.wait()

    def append(self, data: bytes) -> None:
        if self.discarding:
            return
        if not data or self._must_raise is not None:
            return
        self._received += len(data)
        limit = self._max_content_length
        if limit is not None and self._received > limit:
            self._must_raise = RequestEntityTooLarge()
            self._data.clear()
            self.set_complete()
            return
        self._data.extend(data)
        self._has_data.set()

    async def __anext__(self) -> bytes:
        if self._over_limit():
            raise RequestEntityTooLarge()
        try:
            return await super().__anext__()
        finally:
            self._wake()

    def __await__(self) -> Generator[Any, None, Any]:
        self._whole = True
        self._wake()
        if self._over_limit():
            raise RequestEntityTooLarge()
        return (yield from super().__await__())


class StreamingRequest(TrioRequest):
    body_class = FlowControlledBody


class StreamingHTTPConnection(TrioASGIHTTPConnection):
    async def handle_messages(  # type: ignore[override]
        self, nursery: trio.Nursery, request: Any, receive: Any
    ) -> None:
        body = request.body
        while True:
            if isinstance(body, FlowControlledBody):
                await body.wait_for_room()
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body.set_complete()
                    if isinstance(body, FlowControlledBody):
                        body.ended.set()
            elif message["type"] == "http.disconnect":
                break
        # As Quart-trio does: a client that hung up cancels its request's handler.
        nursery.cancel_scope.cancel()

    async def handle_request(  # type: ignore[override]
        self, nursery: trio.Nursery, request: Any, send: Any
    ) -> None:
        response = await self.app.handle_request(request)
        body = request.body
        if isinstance(body, FlowControlledBody) and not body.ended.is_set():
            # Answered before the body was read (a 413, a 404...). Hypercorn closes the
            # connection once the answer is out, and a client still sending would then
            # see a reset instead of the answer: swallow the rest first, for a while.
            body.discard()
            with trio.move_on_after(self.app.config[DISCARD_TIMEOUT_KEY]):
                await body.ended.wait()
        timeout = getattr(response, "timeout", Ellipsis)
        if timeout is Ellipsis:
            timeout = self.app.config["RESPONSE_TIMEOUT"]
        with trio.move_on_after(float("inf") if timeout is None else timeout):
            await self._send_response(send, response)
        nursery.cancel_scope.cancel()


def raise_body_limit(max_bytes: int) -> None:
    """Let the current request's body be up to `max_bytes` (for streamed uploads)."""
    body = request.body
    if isinstance(body, FlowControlledBody):
        body.set_limit(max_bytes)


def cap_body_limit(max_bytes: int) -> None:
    """Let the current request's body be at most `max_bytes` (never raises the limit)."""
    body = request.body
    if isinstance(body, FlowControlledBody):
        current = body.limit
        body.set_limit(max_bytes if current is None else min(current, max_bytes))
