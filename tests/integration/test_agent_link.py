"""The manager's end of the agent link against a fake (and hostile) agent on loopback.

A reply too large or malformed fails only its call; a frame stream that breaks the
protocol drops the link, the calls in flight on it fail at once with AgentUnreachable,
the manager keeps answering, and the agent may link again straight away.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from crucible.cluster.links import AgentCallFailed, AgentMessageTooLarge, AgentUnreachable
from crucible.protocol import VERSION, codec
from crucible.protocol.auth import agent_headers
from crucible.protocol.calls import AgentCall, Execute, GetLogs, KernelLogs
from crucible.protocol.framing import FIRST, LAST
from crucible.protocol.reports import AgentInfo, Heartbeat
from testlib.link import PeerEnd, raw_frame
from testlib.server import CLUSTER_SECRET, Harness

LINK_SETTINGS = {
    "cluster": {"link_frame_bytes": 16 * 1024, "link_max_message_bytes": 4 * 1024 * 1024},
    "agent": {"stream_output_bytes": 1000, "rich_output_bytes": 1000},
}
AGENT_ID = "hostile-agent"


@asynccontextmanager
async def fake_agent(manager: Harness, agent_id: str = AGENT_ID) -> AsyncIterator[PeerEnd]:
    url = manager.url.replace("http://", "ws://") + "/internal/agent"
    headers = [(k.encode(), v.encode()) for k, v in agent_headers(CLUSTER_SECRET, agent_id)]
    async with open_websocket_url(url, extra_headers=headers) as ws:
        peer = PeerEnd(ws)
        heartbeat = Heartbeat(AgentInfo(agent_id, VERSION, {"cpu": 1.0}, ()), ())
        await peer.send(codec.heartbeat_message(heartbeat))
        with trio.fail_after(5):
            await manager.server.components.agents.wait_linked(agent_id)
        yield peer


def execute(code: str) -> Execute:
    return Execute("k", "r", "query", code, {}, 1.0)


async def call(manager: Harness, outcome: list[Any], agent_call: AgentCall[Any]) -> None:
    """Call the agent; record the result or the exception."""
    try:
        link = manager.server.components.agents.link(AGENT_ID)
        outcome.append(await link.call(agent_call, timeout=10))
    except (AgentCallFailed, AgentUnreachable, trio.TooSlowError) as exc:
        outcome.append(exc)


async def outcomes(outcome: list[Any], count: int) -> None:
    with trio.fail_after(5):
        while len(outcome) < count:
            await trio.sleep(0.01)


async def manager_answers(manager: Harness) -> None:
    async with httpx.AsyncClient(base_url=manager.url, timeout=5) as http:
        assert (await http.get("/")).status_code == 200


@pytest.mark.manager_config(LINK_SETTINGS)
async def test_bad_replies_fail_their_call_only(manager: Harness) -> None:
    async with fake_agent(manager) as agent, trio.open_nursery() as nursery:
        outcome: list[Any] = []
        nursery.start_soon(call, manager, outcome, execute("x" * 1024 * 1024))
        got = await agent.receive_type("call")
        call_id = got.message["id"]
        assert got.ref == call_id and len(got.message["params"]["code"]) == 1024 * 1024
        # A reply larger than the manager takes: refused from its first frame on.
        await agent.ws.send_message(raw_frame(FIRST, 1, b"{", ref=call_id, total=10**8))
        await agent.ws.send_message(raw_frame(LAST, 1, b"}", total=10**8))
        await outcomes(outcome, 1)
        assert isinstance(outcome[0], AgentCallFailed)
        assert "refused" in outcome[0].title and "limit" in outcome[0].title

        nursery.start_soon(call, manager, outcome, GetLogs("k"))
        got = await agent.receive_type("call")
        await agent.send(b'{"type": "result", "id": ', ref=got.message["id"])
        await outcomes(outcome, 2)
        assert isinstance(outcome[1], AgentCallFailed) and "malformed" in outcome[1].title

        # Replies that are JSON but do not fit the protocol fail their call only.
        nursery.start_soon(call, manager, outcome, GetLogs("k"))
        got = await agent.receive_type("call")
        reply = {"type": "result", "id": got.message["id"], "result": {"logs": 5}}
        await agent.send(reply, ref=got.message["id"])
        await outcomes(outcome, 3)
        assert isinstance(outcome[2], AgentCallFailed) and outcome[2].kind == "agent-failure"
        assert "$.logs: expected a string, got an integer" in outcome[2].title
        nursery.start_soon(call, manager, outcome, GetLogs("k"))
        got = await agent.receive_type("call")
        error = {"kind": "no-such-kind", "title": "?"}
        await agent.send({"type": "error", "id": got.message["id"], "error": error})
        await outcomes(outcome, 4)
        assert isinstance(outcome[3], AgentCallFailed) and "no-such-kind" in outcome[3].title

        # Odd messages that are not replies are shrugged off as well.
        await agent.send({"type": "heartbeat", "agent": "not an object", "kernels": 5})
        await agent.send({"type": "event", "name": "kernel_terminated", "kernel_id": 5})
        await agent.send({"type": "result", "id": "no such call"})
        await agent.send({"no type": True})

        # The link is still up: a call and its (multi-frame) answer go through.
        nursery.start_soon(call, manager, outcome, GetLogs("k"))
        got = await agent.receive_type("call")
        answer = KernelLogs("é" * (3 * 1024 * 1024 // 2))
        await agent.send(codec.result_message(got.message["id"], answer))
        await outcomes(outcome, 5)
        assert outcome[4] == answer
        assert AGENT_ID in manager.server.components.agents.links


@pytest.mark.manager_config(LINK_SETTINGS)
async def test_a_call_too_large_for_the_link_is_refused_before_it_is_sent(
    manager: Harness,
) -> None:
    async with fake_agent(manager) as agent:
        link = manager.server.components.agents.link(AGENT_ID)
        with pytest.raises(AgentMessageTooLarge):
            await link.call(execute("y" * (5 * 1024 * 1024)), timeout=10)
        # The agent's own limit may be lower: its refusal is a too-large failure too.
        async with trio.open_nursery() as nursery:
            outcome: list[Any] = []
            nursery.start_soon(call, manager, outcome, execute("z"))
            got = await agent.receive_type("call")
            error = {"kind": "message-too-large", "title": "over the agent's limit"}
            await agent.send({"type": "error", "id": got.message["id"], "error": error})
        assert isinstance(outcome[0], AgentMessageTooLarge)


@pytest.mark.parametrize(
    "poison",
    [
        "a text frame",
        b"\x01" * 5,  # shorter than a header
        raw_frame(LAST, 99, b"}"),  # a frame of a message that never began
        raw_frame(FIRST | LAST, 1, b"{}", total=1),  # longer than announced
        b"\0" * (2 * 1024 * 1024),  # larger than any valid frame
    ],
    ids=["text", "short", "unknown", "longer", "huge"],
)
@pytest.mark.manager_config(LINK_SETTINGS)
async def test_a_broken_frame_stream_drops_the_link_and_fails_calls_in_flight(
    manager: Harness, poison: str | bytes
) -> None:
    directory = manager.server.components.agents
    outcome: list[Any] = []
    async with fake_agent(manager) as agent, trio.open_nursery() as nursery:
        nursery.start_soon(call, manager, outcome, execute("print(1)"))
        await agent.receive_type("call")
        await agent.ws.send_message(poison)
        with trio.fail_after(5):
            while not outcome:
                await trio.sleep(0.01)
    assert isinstance(outcome[0], AgentUnreachable)  # at once, not after its timeout
    assert AGENT_ID not in directory.links
    await manager_answers(manager)
    # The agent links again straight away.
    async with fake_agent(manager) as agent:
        assert AGENT_ID in directory.links
