"""Length-prefixed JSON frames: the wire format of the runner's sockets.

Each frame is a 4-byte big-endian length followed by that many bytes of a UTF-8 JSON
object (docs/internals.md, "Agent ↔ kernel runner"). The same framing, with a larger
limit, carries the runner's private channel to its Python child.

Standard library only: this module runs inside kernel images (Python 3.9+).
"""

from __future__ import annotations

import json
import struct
from typing import Any

#: The agent refuses bigger frames, and so do we: a frame this large is a bug or an attack.
MAX_FRAME_BYTES = 16 * 1024 * 1024
#: Frame limit of the runner's private channel to its Python child (pychild.py); the
#: runner splits output for the agent anyway. Here, not in pychild: the runner should
#: not import the child's modules to learn it.
CHANNEL_MAX_FRAME = 64 * 1024 * 1024

HEADER = struct.Struct(">I")


class FrameError(Exception):
    """A frame that cannot be decoded; the stream itself stays usable."""


def encode(message: dict[str, Any]) -> bytes:
    """One frame for `message` (``ensure_ascii=False`` keeps non-ASCII output compact)."""
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )
    return HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> dict[str, Any]:
    """The JSON object in one frame body, or `FrameError`."""
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FrameError(f"malformed frame: {exc}") from None
    if not isinstance(message, dict):
        raise FrameError("a frame must hold a JSON object")
    return message


class FrameDecoder:
    """Incremental decoder for a byte stream of frames.

    An oversized frame is skipped byte by byte as it arrives (never buffered) and
    reported once as a `FrameError`, so one bad frame does not desynchronise the stream.
    """

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self._max_frame = max_frame
        self._buffer = bytearray()
        self._skip = 0

    def feed(self, data: bytes) -> list[dict[str, Any] | FrameError]:
        """Add received bytes; return the complete messages (or errors) in order."""
        out: list[dict[str, Any] | FrameError] = []
        if self._skip:
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = data[dropped:]
        self._buffer += data
        while True:
            if self._skip:
                dropped = min(self._skip, len(self._buffer))
                self._skip -= dropped
                del self._buffer[:dropped]
                if self._skip:
                    break
            if len(self._buffer) < HEADER.size:
                break
            (length,) = HEADER.unpack_from(self._buffer)
            if length > self._max_frame:
                del self._buffer[: HEADER.size]
                self._skip = length
                out.append(FrameError(f"frame of {length} bytes refused (limit {self._max_frame})"))
                continue
            if len(self._buffer) < HEADER.size + length:
                break
            body = bytes(self._buffer[HEADER.size : HEADER.size + length])
            del self._buffer[: HEADER.size + length]
            try:
                out.append(decode_body(body))
            except FrameError as exc:
                out.append(exc)
        return out

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame (bounded by the frame limit)."""
        return len(self._buffer)
