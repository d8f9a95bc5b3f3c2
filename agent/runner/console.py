"""Batching a run's output into ``console`` messages.

Consecutive output of one stream is merged into one item; items keep their order; a
message carries at most `MESSAGE_BYTES` of text and is sent once full or `LINGER`
seconds after its first item, so output streams while it is produced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .loop import Loop, Timer

MESSAGE_BYTES = 60 * 1024
LINGER = 0.02
STREAMS = ("stdout", "stderr")


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


class Console:
    """The pending console items of one run."""

    def __init__(self, loop: Loop, run_id: str, send: Callable[[dict[str, Any]], None]) -> None:
        self._loop = loop
        self._run_id = run_id
        self._send = send
        self._items: list[list[Any]] = []
        self._size = 0
        self._timer: Timer | None = None

    def add(self, kind: str, data: Any) -> None:
        if kind in STREAMS:
            self._add_text(kind, str(data))
        else:
            # Rich items are sent whole (a figure cannot be split).
            self._items.append([kind, data])
            self.flush()

    def _add_text(self, kind: str, text: str) -> None:
        while text:
            room = MESSAGE_BYTES - self._size
            size = _utf8_len(text)
            if size <= room:
                piece, text = text, ""
            else:
                # Cut by characters so that even 4-byte characters fit the room.
                cut = max(room if size == len(text) else room // 4, 1)
                piece, text = text[:cut], text[cut:]
                size = _utf8_len(piece)
            if self._items and self._items[-1][0] == kind:
                self._items[-1][1] += piece
            else:
                self._items.append([kind, piece])
            self._size += size
            if self._size >= MESSAGE_BYTES:
                self.flush()
            elif self._timer is None:
                self._timer = self._loop.call_later(LINGER, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._items:
            items, self._items, self._size = self._items, [], 0
            self._send({"op": "console", "run_id": self._run_id, "items": items})
