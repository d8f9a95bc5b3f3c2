"""`StreamEnd`, one stream's end on the manager ↔ agent link (both sides use it): what it
sends, and which of the far end's messages break the rules."""

from __future__ import annotations

from typing import Any

import trio

from crucible.protocol import codec
from crucible.protocol.framing import LinkClosed
from crucible.protocol.stream_end import StreamEnd
from crucible.protocol.stream_flow import StreamFlow
from crucible.protocol.streams import StreamClose, StreamCredit, StreamData, StreamMessage


class Wire:
    """What an end sent, decoded again; `down` makes every send fail as a closed link."""

    def __init__(self) -> None:
        self.sent: list[StreamMessage] = []
        self.down = False

    async def send(self, envelope: dict[str, Any]) -> None:
        if self.down:
            raise LinkClosed("the link is down")
        self.sent.append(codec.read_stream(envelope))


def end(wire: Wire, *, window: int = 100, credit: int = 0, chunk: int = 4) -> StreamEnd:
    flow = StreamFlow(receive_window=window, send_credit=credit)
    return StreamEnd(7, wire.send, flow, chunk_bytes=chunk)


async def test_bytes_go_in_chunks_within_the_credit() -> None:
    wire = Wire()
    stream = end(wire, credit=6, chunk=4)
    with trio.move_on_after(0.2):  # then it waits for more credit
        await stream.send_bytes(b"abcdefghij")
    assert [m.payload() for m in wire.sent if isinstance(m, StreamData)] == [b"abcd", b"ef"]
    assert all(m.stream == 7 for m in wire.sent)


async def test_credit_goes_back_once_a_quarter_window_is_passed_on() -> None:
    wire = Wire()
    stream = end(wire, window=100)
    assert stream.take(StreamData.of(7, b"x" * 30)) is None
    await stream.grant_consumed(10)
    assert wire.sent == []  # under a quarter window: not worth a message yet
    await stream.grant_consumed(20)
    assert wire.sent == [StreamCredit(7, 30)]
    stream.flow.end("over")
    stream.take(StreamData.of(7, b"y" * 30))  # ignored once over
    await stream.grant_consumed(30)
    assert wire.sent == [StreamCredit(7, 30)]  # nothing more for an ended stream


def test_the_far_ends_broken_rules_are_named() -> None:
    stream = end(Wire(), window=10)
    assert stream.take(StreamData(7, "!!not base64")) is not None
    assert "over the window" in (stream.take(StreamData.of(7, b"x" * 11)) or "")
    assert stream.take(StreamCredit(7, 0)) is not None
    assert stream.take(StreamCredit(7, -5)) is not None
    assert stream.take(StreamCredit(7, 5)) is None
    assert stream.ended is False


async def test_a_close_ends_the_flow_and_keeps_refused() -> None:
    stream = end(Wire())
    assert stream.take(StreamClose(7, "no service there", refused=True)) is None
    assert stream.ended
    assert stream.flow.ending is not None and stream.flow.ending.refused


async def test_telling_the_close_on_a_link_that_went_down_is_quiet() -> None:
    wire = Wire()
    stream = end(wire)
    await stream.tell_closed("bye", refused=True)
    assert wire.sent == [StreamClose(7, "bye", True)]
    wire.down = True
    await stream.tell_closed("again")  # no LinkClosed escapes
    assert len(wire.sent) == 1
