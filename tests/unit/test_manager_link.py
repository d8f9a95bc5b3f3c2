"""The agent's link to a manager against a hostile manager on loopback: refused
handshakes, TEXT frames, oversized WebSocket messages, broken frames, malformed and
oversized calls, a call that crashes. Each fails at most its own call or the link, the
link is dialled again, and `ManagerLink.run` never raises."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from crucible.agent.events import EventSink
from crucible.agent.manager_link import ManagerLink
from crucible.config import Config, config_from_dict
from crucible.protocol import VERSION, codec
from crucible.protocol.calls import (
    CallTable,
    Done,
    GetLogs,
    Interrupt,
    KernelList,
    KernelLogs,
    ListKernels,
    RestartKernel,
)
from crucible.protocol.framing import MALFORMED, TOO_LARGE
from crucible.protocol.reports import AgentInfo, Heartbeat
from testlib.link import PeerEnd, raw_frame

SECRET = "link-test-secret-0123456789abcdef"
CONFIG = config_from_dict(
    {
        "cluster": {
            "secret": SECRET,
            "link_frame_bytes": 16 * 1024,
            "link_max_message_bytes": 1024 * 1024,
        },
        "agent": {
            "heartbeat_interval": 0.2,
            "stream_output_bytes": 1000,
            "rich_output_bytes": 1000,
        },
    }
)


class FakeAgent:
    """The agent side of the calls: a few of them, some with a bug."""

    def __init__(self, config: Config) -> None:
        self.id = "fake-agent"
        self.config = config
        self.kernels: dict[str, Any] = {}
        self.sinks: list[EventSink] = []
        self.handlers = CallTable()
        self.handlers.add(GetLogs, self.echo)
        self.handlers.add(Interrupt, self.boom)
        self.handlers.add(ListKernels, self.big)
        self.handlers.add(RestartKernel, self.wrong_reply)

    def heartbeat(self) -> Heartbeat:
        return Heartbeat(AgentInfo(self.id, VERSION, {}, ()), ())

    def calls(self) -> CallTable:
        return self.handlers

    async def echo(self, call: GetLogs) -> KernelLogs:
        return KernelLogs(f"echo {call.kernel_id}")

    async def boom(self, call: Interrupt) -> Done:
        raise RuntimeError("a bug in a call")

    async def big(self, call: ListKernels) -> KernelList:
        return KernelList(("b" * (2 * 1024 * 1024),))

    async def wrong_reply(self, call: RestartKernel) -> object:
        return Done()  # a bug: a restart is answered with its container id

    def add_event_sink(self, sink: EventSink) -> None:
        self.sinks.append(sink)

    def remove_event_sink(self, sink: EventSink) -> None:
        self.sinks.remove(sink)


Scenario = Callable[[WebSocketRequest], Awaitable[None]]


async def link_until(
    agent: FakeAgent, handler: Scenario, done: trio.Event, *, timeout: float
) -> None:
    """Serve `handler` as the manager and let a real `ManagerLink` dial it until `done`;
    the link's task raising anything fails the test."""
    with trio.fail_after(timeout):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
            link = ManagerLink(agent, f"ws://127.0.0.1:{server.port}", SECRET)
            await nursery.start(link.run)
            await done.wait()
            nursery.cancel_scope.cancel()


async def reject(request: WebSocketRequest) -> None:
    await request.reject(500, body=b"not today")


async def text_frame(request: WebSocketRequest) -> None:
    ws = await request.accept()
    await ws.send_message('{"type": "call", "id": 1, "method": "echo"}')
    await trio.sleep(5)  # the agent hangs up


async def oversized_websocket_message(request: WebSocketRequest) -> None:
    ws = await request.accept()
    await ws.send_message(b"\0" * (2 * 1024 * 1024))  # 1009 at the agent
    await trio.sleep(5)


async def broken_frame(request: WebSocketRequest) -> None:
    ws = await request.accept()
    await ws.send_message(b"\x07garbage that is no frame header")
    await trio.sleep(5)


def call(call_id: int, method: str, params: object) -> dict[str, Any]:
    return {"type": "call", "id": call_id, "method": method, "params": params}


async def test_the_link_survives_a_hostile_manager_and_always_redials() -> None:
    replies: dict[int, codec.FromAgent] = {}
    connections: list[str] = []
    done = trio.Event()

    async def hostile_calls(request: WebSocketRequest) -> None:
        peer = PeerEnd(await request.accept())
        first = await peer.receive()
        assert isinstance(codec.read_from_agent(first.message), Heartbeat)
        await peer.send(call(1, "interrupt", {"kernel_id": "k"}), ref=1)
        await peer.send(call(2, "logs", {"kernel_id": "x1"}), ref=2)
        # Declared larger than the agent takes: refused on the first frame.
        await peer.ws.send_message(raw_frame(0x01, 77, b"{", ref=3, total=5 * 1024 * 1024))
        await peer.send(b'{"type": "call", "id": 4, "met', ref=4)
        await peer.send(call(5, "list_kernels", {}), ref=5)
        await peer.send(call(6, "nope", []), ref=6)
        await peer.send(call(7, "logs", "odd"), ref=7)
        await peer.send(call(8, "logs", {"kernel_id": "k", "surprise": 1}), ref=8)
        await peer.send(call(9, "destroy_kernel", {"kernel_id": "k", "reason": "r"}), ref=9)
        await peer.send(call(10, "restart_kernel", {"kernel_id": "k"}), ref=10)
        await peer.send({"type": "call", "id": "eleven", "method": "logs"}, ref=11)
        await peer.send({"type": "nonsense"})
        while len(replies) < 11:
            got = await peer.receive()
            if got.message["type"] in ("result", "error"):
                assert got.ref == got.message["id"]
                replies[got.message["id"]] = codec.read_from_agent(got.message)
        await peer.ws.aclose()

    scenarios: list[Scenario] = [
        reject,
        text_frame,
        oversized_websocket_message,
        broken_frame,
        hostile_calls,
    ]

    async def handler(request: WebSocketRequest) -> None:
        connections.append(request.path)
        if scenarios:
            with contextlib.suppress(ConnectionClosed):
                await scenarios.pop(0)(request)
            return
        # Finally a well-behaved manager: the agent is still dialling.
        peer = PeerEnd(await request.accept())
        assert (await peer.receive()).message["type"] == "heartbeat"
        done.set()
        await trio.sleep_forever()

    await link_until(FakeAgent(CONFIG), handler, done, timeout=40)
    assert connections == ["/internal/agent"] * 6
    errors = {
        call_id: reply.failure
        for call_id, reply in replies.items()
        if isinstance(reply, codec.IncomingError)
    }
    assert errors[1].kind == "agent-failure" and "a bug in a call" in errors[1].title
    assert isinstance(replies[2], codec.IncomingResult)
    assert codec.read_result(replies[2], GetLogs("x1")) == KernelLogs("echo x1")
    assert errors[3].kind == TOO_LARGE and "limit" in errors[3].title
    assert errors[4].kind == MALFORMED
    # The answer was too large to send: the agent's failure, not the request's.
    assert errors[5].kind == "agent-failure" and "limit" in errors[5].title
    assert errors[6].kind == "agent-invalid-input" and "unknown method 'nope'" in errors[6].title
    # Params that do not fit the call are refused, naming what is wrong.
    assert errors[7].kind == "agent-invalid-input" and "expected an object" in errors[7].title
    assert errors[8].kind == "agent-invalid-input"
    assert "unknown field(s): surprise" in errors[8].title
    assert errors[9].kind == "agent-invalid-input" and "destroy_kernel" in errors[9].title
    # A handler that answers with the wrong reply is a bug of the agent.
    assert errors[10].kind == "agent-failure" and "answered a Done" in errors[10].title
    # An unreadable id: the frame's ref still names the call.
    assert errors[11].kind == "agent-invalid-input" and "integer id" in errors[11].title


class FlakyAgent(FakeAgent):
    """An agent whose first heartbeat hits a bug."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.heartbeats = 0

    def heartbeat(self) -> Heartbeat:
        self.heartbeats += 1
        if self.heartbeats == 1:
            raise KeyError("a bug while building a heartbeat")
        return super().heartbeat()


async def test_a_bug_in_the_link_is_logged_and_the_link_dialled_again(
    caplog: Any,
) -> None:
    linked = trio.Event()

    async def handler(request: WebSocketRequest) -> None:
        peer = PeerEnd(await request.accept())
        with contextlib.suppress(ConnectionClosed):
            assert isinstance(codec.read_from_agent((await peer.receive()).message), Heartbeat)
            linked.set()
            await trio.sleep_forever()

    await link_until(FlakyAgent(CONFIG), handler, linked, timeout=20)
    failures = [r for r in caplog.records if r.levelname == "ERROR" and "failed" in r.message]
    assert failures and failures[0].exc_info is not None  # with its traceback
