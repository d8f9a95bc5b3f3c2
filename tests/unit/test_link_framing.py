"""The manager ↔ agent link's framing: bounded frames, bounded reassembly, fairness,
back-pressure, and hostile frame streams that fail one message or the link, never more."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from crucible.config import ClusterConfig, ConfigError, config_from_dict
from crucible.protocol.framing import (
    ABORT,
    BUSY,
    FIRST,
    HEADER,
    LAST,
    MALFORMED,
    TOO_LARGE,
    FramedLink,
    LinkBroken,
    LinkClosed,
    LinkLimits,
    MessageTooLarge,
    Reassembler,
    Received,
    Refused,
    encode_message,
)
from crucible.protocol.version import VERSION
from testlib.link import raw_frame as frame

#: What a reader gets: a message, or the refusal of one.
Got = Received | Refused
LIMITS = LinkLimits(
    frame_bytes=4096, max_message_bytes=1024 * 1024, max_partial_messages=4, send_timeout=5.0
)


class MemoryTransport:
    """One end of an in-memory socket; a zero-capacity channel is a reader that holds
    back: a writer waits until its frame is taken."""

    def __init__(
        self, send: trio.MemorySendChannel[bytes], receive: trio.MemoryReceiveChannel[bytes]
    ) -> None:
        self._send = send
        self._receive = receive
        self.sent: list[bytes] = []
        #: Seconds each frame takes to go out (a slow network).
        self.delay = 0.0

    async def send_frame(self, frame: bytes) -> None:
        await trio.sleep(self.delay)
        try:
            await self._send.send(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise LinkClosed("peer gone") from exc
        self.sent.append(frame)

    async def receive_frame(self) -> bytes:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError) as exc:
            raise LinkClosed("peer gone") from exc


def transport_pair() -> tuple[MemoryTransport, MemoryTransport]:
    a_send, b_receive = trio.open_memory_channel[bytes](0)
    b_send, a_receive = trio.open_memory_channel[bytes](0)
    return MemoryTransport(a_send, a_receive), MemoryTransport(b_send, b_receive)


@asynccontextmanager
async def linked_pair(
    limits: LinkLimits = LIMITS,
) -> AsyncIterator[tuple[FramedLink, FramedLink, list[Got], MemoryTransport]]:
    """Two links over memory; what the second receives lands in the returned list."""
    near, far = transport_pair()
    sender, receiver = FramedLink(near, limits), FramedLink(far, limits)
    received: list[Got] = []

    async def serve(link: FramedLink, deliver: Any) -> None:
        try:
            await link.serve(deliver)
        except* LinkClosed:
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, sender, lambda d: None)
        nursery.start_soon(serve, receiver, received.append)
        yield sender, receiver, received, near
        nursery.cancel_scope.cancel()


async def wait_for(received: list[Got], count: int) -> None:
    with trio.fail_after(5):
        while len(received) < count:
            await trio.sleep(0.001)


# -- sending ------------------------------------------------------------------------------


async def test_a_large_message_travels_in_bounded_frames() -> None:
    body = {"type": "result", "id": 7, "result": {"text": "😀x" * 150_000}}
    async with linked_pair() as (sender, _receiver, received, wire):
        with trio.fail_after(10):
            await sender.send(body, ref=7)
        await wait_for(received, 1)
    assert received == [Received(body, 7)]
    assert len(wire.sent) > 100
    assert max(len(f) for f in wire.sent) <= LIMITS.frame_bytes + HEADER.size


async def test_non_ascii_is_not_escaped_and_lone_surrogates_survive() -> None:
    body = {"text": "😀" * 10 + "\ud800"}
    assert len(encode_message({"text": "😀"})) == len('{"text":""}') + 4
    async with linked_pair() as (sender, _receiver, received, _wire):
        with trio.fail_after(5):
            await sender.send(body)
        await wait_for(received, 1)
    assert received == [Received(body, 0)]


async def test_a_small_message_overtakes_a_large_transfer() -> None:
    big = {"type": "result", "blob": "x" * (400 * 1024)}
    small = {"type": "heartbeat"}
    async with linked_pair() as (sender, _receiver, received, wire):
        wire.delay = 0.002  # 100 frames: at least 0.2 s
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender.send, big)
            await trio.sleep(0.01)  # the transfer is under way
            with trio.fail_after(5):
                await sender.send(small)
        await wait_for(received, 2)
    assert [d.message["type"] for d in received if isinstance(d, Received)] == [
        "heartbeat",
        "result",
    ]


async def test_a_slow_reader_slows_the_writer() -> None:
    near, far = transport_pair()
    link = FramedLink(near, LIMITS)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.serve, lambda d: None)
        done = trio.Event()

        async def send() -> None:
            await link.send({"blob": "y" * 100_000})
            done.set()

        nursery.start_soon(send)
        await trio.sleep(0.2)
        # Nobody reads: at most one frame is in the writer's hand, the sender waits.
        assert not done.is_set()
        assert len(near.sent) == 0
        frames = -(-len(encode_message({"blob": "y" * 100_000})) // LIMITS.frame_bytes)
        with trio.fail_after(5):
            for _ in range(frames):
                await far._receive.receive()
            await done.wait()
        nursery.cancel_scope.cancel()


async def test_a_reader_that_stops_for_good_breaks_the_link() -> None:
    near, _far = transport_pair()
    limits = LinkLimits(4096, 1024 * 1024, 4, send_timeout=0.2)
    link = FramedLink(near, limits)
    broken = pytest.RaisesGroup(LinkBroken, allow_unwrapped=True, flatten_subgroups=True)
    with trio.fail_after(5), broken:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(link.serve, lambda d: None)
            with pytest.raises(LinkClosed):
                await link.send({"x": 1})
    assert link.closed


async def test_a_message_over_the_limit_is_not_sent() -> None:
    async with linked_pair() as (sender, _receiver, received, wire):
        with pytest.raises(MessageTooLarge) as info:
            await sender.send({"blob": "z" * (2 * 1024 * 1024)})
        assert info.value.limit == LIMITS.max_message_bytes
        with trio.fail_after(5):
            await sender.send({"after": True})
        await wait_for(received, 1)
    assert received == [Received({"after": True}, 0)]
    assert len(wire.sent) == 1


async def test_a_sender_cancelled_half_way_aborts_its_message() -> None:
    near, far = transport_pair()
    link = FramedLink(near, LIMITS)
    reassembler = Reassembler(LIMITS)
    scope = trio.CancelScope()

    async def send_big() -> None:
        with scope:
            await link.send({"blob": "a" * 100_000})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.serve, lambda d: None)
        nursery.start_soon(send_big)
        with trio.fail_after(5):
            for _ in range(3):
                assert reassembler.feed(await far._receive.receive()) is None
            assert reassembler.buffered_bytes > 0
            scope.cancel()
            nursery.start_soon(link.send, {"after": True})
            got = None
            while got is None:
                got = reassembler.feed(await far._receive.receive())
        assert got == Received({"after": True}, 0)
        assert reassembler.buffered_bytes == 0  # the peer dropped the aborted part
        nursery.cancel_scope.cancel()


async def test_senders_waiting_when_the_link_dies_get_link_closed() -> None:
    near, far = transport_pair()
    link = FramedLink(near, LIMITS)
    failures: list[BaseException] = []

    async def send() -> None:
        try:
            await link.send({"blob": "b" * 50_000})
        except LinkClosed as exc:
            failures.append(exc)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            nursery.start_soon(send)
            try:
                async with trio.open_nursery() as inner:
                    inner.start_soon(link.serve, lambda d: None)
                    await far._receive.receive()  # one frame, then the peer goes away
                    await far._send.aclose()
                    await far._receive.aclose()
            except* LinkClosed:
                pass
    assert len(failures) == 2
    with pytest.raises(LinkClosed):
        await link.send({"late": True})


# -- receiving ----------------------------------------------------------------------------


def feed_all(reassembler: Reassembler, frames: list[bytes]) -> list[Got]:
    out = []
    for f in frames:
        got = reassembler.feed(f)
        if got is not None:
            out.append(got)
    return out


def test_reassembly_of_interleaved_messages() -> None:
    one, two = encode_message({"n": 1}), encode_message({"n": 2, "pad": "p" * 100})
    frames = [
        frame(FIRST, 1, one[:3], total=len(one)),
        frame(FIRST, 2, two[:50], ref=9, total=len(two)),
        frame(LAST, 1, one[3:], total=len(one)),
        frame(0, 2, two[50:100], total=len(two)),
        frame(LAST, 2, two[100:], total=len(two)),
    ]
    reassembler = Reassembler(LIMITS)
    assert feed_all(reassembler, frames) == [
        Received({"n": 1}, 0),
        Received({"n": 2, "pad": "p" * 100}, 9),
    ]
    assert reassembler.buffered_bytes == 0


def test_an_oversized_message_is_refused_with_its_ref_and_the_link_goes_on() -> None:
    reassembler = Reassembler(LIMITS)
    huge = LIMITS.max_message_bytes + 1
    got = feed_all(
        reassembler,
        [
            frame(FIRST, 5, b"x" * 100, ref=42, total=huge),
            frame(0, 5, b"x" * 100, total=huge),
            frame(LAST, 5, b"x" * 100, total=huge),
            frame(FIRST | LAST, 6, b'{"ok":1}'),
        ],
    )
    refused = got[0]
    assert isinstance(refused, Refused)
    assert refused == Refused(42, TOO_LARGE, refused.reason)
    assert str(LIMITS.max_message_bytes) in refused.reason
    assert got[1:] == [Received({"ok": 1}, 0)]
    assert reassembler.buffered_bytes == 0


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b"[1, 2, 3]",
        b'"a string"',
        b"\xff\xfe{}",
        b"[" * 200_000 + b"]" * 200_000,
    ],
    ids=["syntax", "array", "string", "bad-utf8", "deep-nesting"],
)
def test_a_malformed_message_is_refused_not_fatal(payload: bytes) -> None:
    reassembler = Reassembler(LinkLimits(4096, 1024 * 1024, 4, 5.0))
    frames = [
        frame(FIRST, 1, payload[:1000], ref=3, total=len(payload)),
        *(
            frame(LAST if end >= len(payload) else 0, 1, payload[start:end], total=len(payload))
            for start, end in ((s, s + 1000) for s in range(1000, len(payload), 1000))
        ),
    ]
    if len(payload) <= 1000:
        frames = [frame(FIRST | LAST, 1, payload, ref=3)]
    got = feed_all(reassembler, [*frames, frame(FIRST | LAST, 2, b"{}")])
    assert isinstance(got[0], Refused) and got[0].kind == MALFORMED and got[0].ref == 3
    assert got[1] == Received({}, 0)


def test_too_many_messages_at_once_are_refused() -> None:
    reassembler = Reassembler(LIMITS)
    frames = [frame(FIRST, i, b"{", ref=i, total=2) for i in range(1, 6)]
    got = feed_all(reassembler, frames)
    assert len(got) == 1 and isinstance(got[0], Refused)
    assert got == [Refused(5, BUSY, got[0].reason)]
    # The others complete normally; the refused one's rest is ignored.
    tails = [frame(LAST, i, b"}", total=2) for i in range(1, 6)]
    assert feed_all(reassembler, tails) == [Received({}, i) for i in range(1, 5)]


def test_an_aborted_message_is_dropped() -> None:
    reassembler = Reassembler(LIMITS)
    got = feed_all(
        reassembler,
        [
            frame(FIRST, 1, b"x" * 1000, total=5000),
            frame(ABORT, 1, b"", total=5000),
            frame(FIRST | LAST, 1, b'{"again":true}'),
        ],
    )
    assert got == [Received({"again": True}, 0)]


@pytest.mark.parametrize(
    ("frames", "complaint"),
    [
        ([b"\x02\x03"], "shorter than its header"),
        ([HEADER.pack(1, FIRST | LAST, 1, 0, 2) + b"{}"], "version"),
        ([HEADER.pack(VERSION, 0x40 | FIRST, 1, 0, 2) + b"{}"], "flags"),
        ([frame(FIRST | LAST, 0, b"{}")], "flags"),
        ([frame(LAST, 9, b"{}")], "never began"),
        ([frame(FIRST, 1, b"{", total=2), frame(FIRST, 1, b"{", total=2)], "began twice"),
        ([frame(FIRST, 1, b"{}}", total=2)], "longer than"),
        ([frame(FIRST, 1, b"{", total=3), frame(LAST, 1, b"}", total=3)], "shorter than"),
        (
            [frame(FIRST, i, b"x", total=10**9) for i in range(1, 7)],
            "too many refused",
        ),
    ],
    ids=[
        "short",
        "version",
        "flags",
        "id-zero",
        "unknown",
        "twice",
        "longer",
        "shorter",
        "refusals",
    ],
)
def test_a_broken_frame_stream_breaks_the_link(frames: list[bytes], complaint: str) -> None:
    reassembler = Reassembler(LIMITS)
    with pytest.raises(LinkBroken, match=complaint):
        feed_all(reassembler, frames)


def test_limits_come_from_the_cluster_settings() -> None:
    limits = LinkLimits.from_config(ClusterConfig())
    assert limits.frame_bytes == 256 * 1024
    assert limits.max_message_bytes == 32 * 1024 * 1024
    assert json.loads(encode_message({"a": [1, None]})) == {"a": [1, None]}


def test_a_configuration_whose_results_could_overflow_the_link_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(
            {
                "cluster": {"link_max_message_bytes": 8 * 1024 * 1024, "link_frame_bytes": 512},
                "agent": {"stream_output_bytes": 1024 * 1024},
            }
        )
    problems = "\n".join(info.value.problems)
    assert "cluster.link_max_message_bytes: must be at least" in problems
    assert "cluster.link_frame_bytes: must be between 1024 and 1048576" in problems
    # Smaller caps make a smaller link limit fine.
    config_from_dict(
        {
            "cluster": {"link_max_message_bytes": 8 * 1024 * 1024},
            "agent": {"stream_output_bytes": 262_144, "rich_output_bytes": 2 * 1024 * 1024},
        }
    )
