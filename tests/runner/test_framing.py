"""The frame codec shared by the runner, its child and the agent side."""

from __future__ import annotations

import struct

from crucible.agent.runner import framing


def test_round_trip_in_pieces() -> None:
    messages = [{"op": "ping", "req_id": str(i), "text": "é✓" * i} for i in range(5)]
    data = b"".join(framing.encode(m) for m in messages)
    decoder = framing.FrameDecoder()
    out = []
    for i in range(0, len(data), 3):
        out.extend(decoder.feed(data[i : i + 3]))
    assert out == messages
    assert decoder.buffered == 0


def test_bad_frames_are_errors_and_the_stream_continues() -> None:
    decoder = framing.FrameDecoder(max_frame=10)
    big = struct.pack(">I", 20) + b"x" * 20
    bad_json = struct.pack(">I", 3) + b"{x]"
    not_object = struct.pack(">I", 2) + b"[]"
    good = framing.encode({"op": "a"})
    out = decoder.feed(big[:7]) + decoder.feed(big[7:] + bad_json + not_object + good)
    assert [type(m) for m in out[:3]] == [framing.FrameError] * 3
    assert "refused" in str(out[0])
    assert out[3] == {"op": "a"}
