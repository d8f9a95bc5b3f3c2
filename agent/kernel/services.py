"""Starting a kernel's apps (spec 9 service ports): the agent's side of the runner's
``start_service`` (docs/internals.md, "Agent ↔ kernel runner").

A request goes to the runner with the declared port and the agent's
``agent.service_start_timeout``; the runner answers once the app accepts on
``127.0.0.1:port`` in the container, or why it could not. The answer is read
defensively (the kernel writes it): anything but ``ok: true`` is a failure, with the
runner's message cut to a bounded length.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio

from crucible.kernels.service_ports import ServicePort, find_service

Send = Callable[[dict[str, Any]], Awaitable[None]]

#: The most of a runner's failure message an error carries (it quotes the app's output).
MAX_MESSAGE_CHARS = 2000
#: Seconds beyond the runner's own deadline the agent waits for its answer.
ANSWER_MARGIN = 5.0


class UnknownService(LookupError):
    """The kernel's image declares no such app, or one that is not started (``pty``)."""


class ServiceFailed(Exception):
    """The app did not come up; the message says why (the runner's words)."""


@attrs.frozen
class ServiceAnswer:
    started: bool


class ServiceRequests:
    """``start_service`` requests sent to one kernel's runner, awaiting its answers."""

    def __init__(self) -> None:
        self._waiting: dict[str, trio.MemorySendChannel[dict[str, Any]]] = {}
        self._ids = itertools.count(1)

    async def start(
        self, send: Send, ports: Sequence[ServicePort], name: str, *, timeout: float
    ) -> tuple[ServicePort, bool]:
        """Start app `name` of `ports` (the image's declaration) and wait until it
        accepts; the port and whether this call started it. `UnknownService`,
        `ServiceFailed`."""
        port = find_service(ports, name)
        if port is None:
            raise UnknownService(f"this session offers no app {name!r}")
        if port.protocol == "pty":
            raise UnknownService(f"app {name!r} is a terminal: open it with the pty stream")
        req_id = f"s{next(self._ids)}"
        channel, receive = trio.open_memory_channel[dict[str, Any]](1)
        self._waiting[req_id] = channel
        try:
            await send(
                {
                    "op": "start_service",
                    "req_id": req_id,
                    "name": name,
                    "port": port.port,
                    "timeout": timeout,
                }
            )
            with trio.move_on_after(timeout + ANSWER_MARGIN):
                async for answer in receive:
                    if answer.get("ok") is True:
                        return port, answer.get("started") is True
                    message = answer.get("message")
                    text = message if isinstance(message, str) else "the runner gave no reason"
                    raise ServiceFailed(text[:MAX_MESSAGE_CHARS])
                raise ServiceFailed(f"the kernel ended while app {name!r} was starting")
            raise ServiceFailed(f"the kernel did not answer about app {name!r} in time")
        finally:
            self._waiting.pop(req_id, None)

    def answer(self, message: dict[str, Any]) -> None:
        """A ``service`` message of the runner."""
        channel = self._waiting.pop(str(message.get("req_id")), None)
        if channel is not None:
            channel.send_nowait(message)
            channel.close()

    def close(self) -> None:
        """The kernel is gone: every request fails."""
        for channel in self._waiting.values():
            channel.close()
        self._waiting.clear()
