"""Credit flow control of one byte stream (`crucible.protocol.stream_flow`) and the
stream messages on the link (`crucible.protocol.streams`, `codec`)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from crucible.protocol import codec
from crucible.protocol.codec import ProtocolError
from crucible.protocol.framing import decode_message, encode_message
from crucible.protocol.stream_flow import StreamEnded, StreamFlow, WindowExceeded
from crucible.protocol.streams import StreamClose, StreamCredit, StreamData, StreamResize


def test_the_receiver_refuses_more_than_its_window() -> None:
    flow = StreamFlow(receive_window=10)
    flow.take(b"123456")
    with pytest.raises(WindowExceeded):
        flow.take(b"12345")
    flow.take(b"1234")  # exactly the window


async def test_credit_comes_back_in_quarter_windows_and_never_deadlocks() -> None:
    flow = StreamFlow(receive_window=100)
    flow.take(b"x" * 100)
    grants = []
    while flow.buffered:
        data = await flow.receive()
        grants.append(flow.consumed(len(data)))
    assert sum(grants) == 100  # all credited back once passed on: the sender goes on
    flow.take(b"y" * 10)
    assert flow.consumed(10) == 0  # under a quarter window: no message yet


async def test_a_sender_waits_for_credit() -> None:
    flow = StreamFlow(receive_window=1, send_credit=3)
    sent: list[bytes] = []

    async def one(chunk: bytes) -> None:
        sent.append(chunk)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(flow.send_all, b"abcdefgh", 2, one)
        await trio.testing.wait_all_tasks_blocked()
        assert sent == [b"ab", b"c"]  # 3 bytes of credit, chunks of at most 2
        flow.grant(5)
        await trio.testing.wait_all_tasks_blocked()
    assert b"".join(sent) == b"abcdefgh"


async def test_the_end_wakes_waiters_and_buffered_bytes_come_first() -> None:
    flow = StreamFlow(receive_window=10)
    flow.take(b"last")
    flow.end("the service closed", refused=False)
    flow.end("a later reason")  # the first stays
    assert await flow.receive() == b"last"
    assert await flow.receive() == b""
    with pytest.raises(StreamEnded, match="the service closed"):
        await flow.reserve(1)


@pytest.mark.parametrize(
    "message",
    [
        StreamData.of(3, b"\x00\xffbytes"),
        StreamCredit(3, 65536),
        StreamResize(3, 40, 120),
        StreamClose(3, "refused", refused=True),
    ],
)
def test_stream_messages_survive_the_wire(message: object) -> None:
    wire = decode_message(encode_message(codec.stream_message(message)))  # type: ignore[arg-type]
    assert codec.is_stream(wire)
    assert codec.read_stream(wire) == message
    assert codec.read_from_agent(wire) == message


@pytest.mark.parametrize(
    "wire",
    [
        {"type": "stream", "op": "nope", "stream": 1},
        {"type": "stream", "op": "credit", "stream": "1", "bytes": 5},
        {"type": "stream", "op": "data", "stream": 1},
        {"type": "stream", "op": "data", "stream": 1, "data": "x", "extra": 1},
    ],
)
def test_bad_stream_messages_are_refused(wire: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        codec.read_stream(wire)


def test_data_that_is_no_base64_is_refused() -> None:
    with pytest.raises(ValueError):
        StreamData(1, "!!!").payload()
