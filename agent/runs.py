"""Runs and their output, as the execute API hands them out (spec 4.6).

A run's output is a sequence of console items interrupted by *handover* statuses
(`clean-finished`, `build-finished`, `waiting-input`, `finished`, `exec-timeout`).
Each execute call returns the items up to the next handover, or, when none comes
within the flush interval, whatever arrived so far as `continued`.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs
import trio

#: Each stream is cut at this many characters per execute call (spec 4.6).
STREAM_CAP = 524_288
TRUNCATION_NOTE = "\n[output truncated: the stream exceeded {cap} characters in this call]\n"
_STREAMS = ("stdout", "stderr")
#: Statuses after which the run is over.
TERMINAL = frozenset({"finished", "exec-timeout"})


class RunState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


@attrs.define
class Handover:
    status: str
    exit_code: int | None = None
    options: dict[str, Any] | None = None


@attrs.define
class Run:
    run_id: str
    mode: str
    code: str
    options: dict[str, Any]
    state: RunState = RunState.QUEUED
    # Items and handovers in arrival order, not yet given to a caller.
    _pending: list[list[Any] | Handover] = attrs.field(factory=list)
    _chars: dict[str, int] = attrs.field(factory=lambda: dict.fromkeys(_STREAMS, 0))
    _truncated: set[str] = attrs.field(factory=set)
    _changed: trio.Event = attrs.field(factory=trio.Event)
    #: Set once the run is over (a terminal handover arrived).
    ended: trio.Event = attrs.field(factory=trio.Event)
    #: Execute calls waiting on this run now, and when the last one returned (trio
    #: clock): a run nobody has listened to for long is abandoned (crucible.agent.kernel).
    listeners: int = 0
    last_listened: float = attrs.field(factory=trio.current_time)

    # -- producer side (the runner) --------------------------------------------------------

    def add_console(self, item: list[Any]) -> None:
        kind = item[0]
        if kind in _STREAMS:
            text = str(item[1])
            room = STREAM_CAP - self._chars[kind]
            if room <= 0:
                self._note_truncation(kind)
                return
            if len(text) > room:
                text = text[:room]
                self._chars[kind] += len(text)
                self._append_stream(kind, text)
                self._note_truncation(kind)
                return
            self._chars[kind] += len(text)
            self._append_stream(kind, text)
        else:
            self._pending.append(list(item))
        self._notify()

    def _append_stream(self, kind: str, text: str) -> None:
        last = self._pending[-1] if self._pending else None
        if isinstance(last, list) and last[0] == kind:
            last[1] += text  # consecutive output of one stream is one item
        else:
            self._pending.append([kind, text])

    def _note_truncation(self, kind: str) -> None:
        if kind not in self._truncated:
            self._truncated.add(kind)
            self._append_stream(kind, TRUNCATION_NOTE.format(cap=STREAM_CAP))
        self._notify()

    def hand_over(self, handover: Handover) -> None:
        self._pending.append(handover)
        if handover.status in TERMINAL:
            self.state = RunState.DONE
            self.ended.set()
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    @property
    def done(self) -> bool:
        return self.state is RunState.DONE

    def unheard_for(self) -> float:
        """Seconds since an execute call last waited on this run (0 while one does)."""
        return 0.0 if self.listeners else trio.current_time() - self.last_listened

    # -- consumer side (an execute call) ---------------------------------------------------

    def _take(self) -> tuple[list[list[Any]], Handover | None]:
        console: list[list[Any]] = []
        for index, entry in enumerate(self._pending):
            if isinstance(entry, Handover):
                del self._pending[: index + 1]
                self._reset_caps()
                return console, entry
            console.append(entry)
        self._pending.clear()
        self._reset_caps()
        return console, None

    def _reset_caps(self) -> None:
        self._chars = dict.fromkeys(_STREAMS, 0)
        self._truncated.clear()

    def _has_handover(self) -> bool:
        return any(isinstance(entry, Handover) for entry in self._pending)

    async def collect(self, flush_interval: float) -> dict[str, Any]:
        """Wait for the next handover, at most `flush_interval` seconds; build the result."""
        self.listeners += 1
        try:
            with trio.move_on_after(flush_interval):
                while not self._has_handover():
                    await self._changed.wait()
        finally:
            self.listeners -= 1
            self.last_listened = trio.current_time()
        console, handover = self._take()
        if handover is None:
            handover = Handover("continued")
        return execution_result(self.run_id, handover, console)


def execution_result(
    run_id: str, handover: Handover, console: list[list[Any]] | None = None
) -> dict[str, Any]:
    """The ExecutionResult object of spec 4.6."""
    options = handover.options
    if handover.status == "waiting-input" and options is None:
        options = {"is_password": False}
    return {
        "runId": run_id,
        "status": handover.status,
        "exitCode": handover.exit_code,
        "console": console or [],
        "options": options,
        "files": [],
    }
