"""The agent's links to its managers: one WebSocket per manager, redialled forever.

Over each link the agent sends heartbeats and events, and answers calls; every call
runs in its own task so a long-polling execute never blocks another call.
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionTimeout,
    DisconnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from crucible.agent.agent import Agent, AgentCallError
from crucible.cluster_auth import agent_headers

log = logging.getLogger(__name__)

#: Manager endpoint agents dial.
AGENT_LINK_PATH = "/internal/agent"
RECONNECT_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)
CONNECT_TIMEOUT = 10.0
#: A manager that takes longer than this to take one message is treated as gone.
SEND_TIMEOUT = 30.0


class ManagerLink:
    def __init__(self, agent: Agent, url: str, secret: str) -> None:
        self.agent = agent
        self.url = url.rstrip("/") + AGENT_LINK_PATH
        self.secret = secret
        self._ws: WebSocketConnection | None = None
        self._send_lock = trio.Lock()
        self.connected = trio.Event()
        self._started = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep a link up until cancelled; `task_status` fires on the first connect attempt."""
        attempt = 0
        while True:
            try:
                await self._serve_once(task_status)
                attempt = 0
            except (
                OSError,
                HandshakeError,
                ConnectionClosed,
                ConnectionTimeout,
                DisconnectionTimeout,
            ) as exc:
                log.info("link to %s down: %s", self.url, exc or type(exc).__name__)
            if not self._started:
                # Managers may come up later: the agent does not wait for them.
                self._started = True
                task_status.started()
            await trio.sleep(RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)])
            attempt += 1

    async def _serve_once(self, task_status: trio.TaskStatus[None]) -> None:
        headers = [(k.encode(), v.encode()) for k, v in agent_headers(self.secret, self.agent.id)]
        async with open_websocket_url(
            self.url,
            extra_headers=headers,
            connect_timeout=CONNECT_TIMEOUT,
            disconnect_timeout=2,
        ) as ws:
            self._ws = ws
            self.agent.add_event_sink(self.send)
            try:
                await self.send(self.agent.heartbeat())
                self.connected.set()
                log.info("linked to manager %s", self.url)
                if not self._started:
                    self._started = True
                    task_status.started()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._heartbeats)
                    while True:
                        message = json.loads(await ws.get_message())
                        if message.get("type") == "call":
                            nursery.start_soon(self._answer, message)
            finally:
                self.agent.remove_event_sink(self.send)
                self._ws = None
                self.connected = trio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None:
            raise ConnectionClosed(None)
        async with self._send_lock:
            with trio.move_on_after(SEND_TIMEOUT) as scope:
                await ws.send_message(json.dumps(message))
            if scope.cancelled_caught:
                # The manager stopped reading: drop the link; `run` dials again.
                with trio.CancelScope(shield=True):
                    await ws.aclose()
                raise ConnectionClosed(None)

    async def _heartbeats(self) -> None:
        interval = self.agent.config.agent.heartbeat_interval
        while True:
            await trio.sleep(interval)
            await self.send(self.agent.heartbeat())

    async def _answer(self, call: dict[str, Any]) -> None:
        call_id = call.get("id")
        method = self.agent.calls().get(str(call.get("method")))
        reply: dict[str, Any]
        try:
            if method is None:
                raise AgentCallError(
                    f"unknown method {call.get('method')!r}", "agent-invalid-input"
                )
            result = await method(dict(call.get("params") or {}))
            reply = {"type": "result", "id": call_id, "result": result}
        except AgentCallError as exc:
            reply = {"type": "error", "id": call_id, "error": {"type": exc.kind, "title": str(exc)}}
        except Exception as exc:
            log.exception("call %s failed", call.get("method"))
            reply = {
                "type": "error",
                "id": call_id,
                "error": {
                    "type": "agent-failure",
                    "title": f"{type(exc).__name__}: {exc}",
                    "exception": "".join(traceback.format_exception_only(exc)).strip(),
                },
            }
        try:
            await self.send(reply)
        except ConnectionClosed:
            log.info("could not answer call %s: the link is down", call_id)
