"""Runs and their output, as the execute API hands them out (spec 4.6).

A run's output is a sequence of console items interrupted by *handover* statuses
(`clean-finished`, `build-finished`, `waiting-input`, `finished`, `exec-timeout`).
Each execute call returns the items up to the next handover, or, when none comes
within the flush interval, whatever arrived so far as `continued`.

Output is bounded in bytes, never in characters, three ways:

* what one execute call hands out (`OutputCaps`): each of stdout and stderr, and all
  other items (html, media, log) together. The rest of that call's output is dropped,
  with a note, so one result always fits the manager link and an HTTP response;
* what one session holds for runs nobody has collected yet, and
* what the whole agent holds (`OutputLedger`). At either limit the output of finished
  runs nobody collected is discarded first (oldest first); only then is new output
  dropped.
"""

from __future__ import annotations

import enum
import itertools
import json
from typing import Any

import attrs
import trio

from crucible.config import AgentConfig
from crucible.protocol.calls import ExecutionResult

STREAMS = ("stdout", "stderr")
#: Statuses after which the run is over.
TERMINAL = frozenset({"finished", "exec-timeout"})
#: The bucket of per-call caps shared by every item that is not a stream.
_RICH = "rich"
_NOTES = {
    "stdout": "\n[output truncated: stdout exceeded {stream} bytes in this call]\n",
    "stderr": "\n[output truncated: stderr exceeded {stream} bytes in this call]\n",
    _RICH: "\n[output truncated: html/media/log items beyond {rich} bytes in this call "
    "were dropped]\n",
    "held": "\n[output dropped: the agent holds too much output that nobody has collected]\n",
}
DISCARDED_NOTE = (
    "\n[output discarded: it was not collected before the agent needed the memory]\n"
)


@attrs.frozen
class OutputCaps:
    """Bytes one execute call hands out: per stream, and for all other items together."""

    stream_bytes: int
    rich_bytes: int

    def note(self, reason: str) -> str:
        return _NOTES[reason].format(stream=self.stream_bytes, rich=self.rich_bytes)


def utf8_prefix(text: str, room: int) -> tuple[str, int]:
    """The longest prefix of `text` that takes at most `room` bytes of UTF-8, and its
    size; never splits a character (lone surrogates count as three bytes)."""
    if room <= 0:
        return "", 0
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= room:
        return text, len(data)
    end = room
    while end > 0 and data[end] & 0xC0 == 0x80:  # a continuation byte: back to its start
        end -= 1
    return data[:end].decode("utf-8", "surrogatepass"), end


def item_bytes(data: Any) -> int:
    """What a non-stream item's data weighs: its size as JSON on the link."""
    try:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        text = str(data)
    return len(text.encode("utf-8", "surrogatepass"))


class OutputLedger:
    """The agent's memory for uncollected output: sessions' shares and the total."""

    def __init__(self, caps: OutputCaps, *, session_bytes: int, total_bytes: int) -> None:
        self.caps = caps
        self.session_bytes = session_bytes
        self.total_bytes = total_bytes
        self.used = 0
        self._sessions: set[SessionOutput] = set()
        self._finish_order = itertools.count()

    @classmethod
    def from_config(cls, agent: AgentConfig | None = None) -> OutputLedger:
        agent = agent or AgentConfig()
        return cls(
            OutputCaps(agent.stream_output_bytes, agent.rich_output_bytes),
            session_bytes=agent.session_output_bytes,
            total_bytes=agent.total_output_bytes,
        )

    def session(self) -> SessionOutput:
        """A new session's share (close it when the session's kernel is gone)."""
        share = SessionOutput(self)
        self._sessions.add(share)
        return share

    def _forget(self, share: SessionOutput) -> None:
        self._sessions.discard(share)

    def next_finish(self) -> int:
        return next(self._finish_order)

    def make_room(self, size: int, *, keep: Run) -> None:
        """Discard finished runs' output, oldest first, until `size` more bytes fit."""
        runs = [run for share in self._sessions for run in share.finished_runs(keep)]
        for run in sorted(runs, key=lambda r: r.finish_order):
            if self.used + size <= self.total_bytes:
                return
            run.discard_output()


class SessionOutput:
    """One session's share of the ledger: bytes its runs hold, and who holds them."""

    def __init__(self, ledger: OutputLedger) -> None:
        self.ledger = ledger
        self.used = 0
        self.closed = False
        #: Runs holding output, in the order they first held some.
        self._runs: dict[Run, None] = {}

    @property
    def caps(self) -> OutputCaps:
        return self.ledger.caps

    def finished_runs(self, keep: Run) -> list[Run]:
        return [run for run in self._runs if run.done and run is not keep]

    def charge(self, run: Run, size: int) -> bool:
        """Account `size` more bytes held by `run`; False when no room can be made."""
        if self.closed:
            return False
        ledger = self.ledger
        if self.used + size > ledger.session_bytes:
            for old in sorted(self.finished_runs(run), key=lambda r: r.finish_order):
                old.discard_output()
                if self.used + size <= ledger.session_bytes:
                    break
        if ledger.used + size > ledger.total_bytes:
            ledger.make_room(size, keep=run)
        if self.used + size > ledger.session_bytes or ledger.used + size > ledger.total_bytes:
            return False
        self.used += size
        ledger.used += size
        self._runs[run] = None
        return True

    def release(self, run: Run, size: int) -> None:
        if self.closed:
            return
        self.used -= size
        self.ledger.used -= size
        if run.held == 0:
            self._runs.pop(run, None)

    def close(self) -> None:
        """The session's kernel is gone: its output no longer counts (and takes none)."""
        if not self.closed:
            self.ledger.used -= self.used
            self.used = 0
            self.closed = True
            self._runs.clear()
            self.ledger._forget(self)


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
class _Console:
    """A pending console item and the bytes it holds in the ledger."""

    kind: Any
    data: Any
    charged: int


@attrs.define(eq=False)
class Run:
    run_id: str
    mode: str
    code: str
    options: dict[str, Any]
    #: The session's share of the agent's memory for output.
    output: SessionOutput
    state: RunState = RunState.QUEUED
    #: Bytes of pending output charged to `output`.
    held: int = 0
    #: When the run ended, among all runs of the agent (for eviction order).
    finish_order: int = -1
    # Items and handovers in arrival order, not yet given to a caller.
    _pending: list[_Console | Handover] = attrs.field(factory=list)
    # Bytes and notes of the output after the last pending handover: what the next
    # call(s) up to a handover hand out, so each result stays within the caps.
    _segment_bytes: dict[str, int] = attrs.field(factory=dict)
    _noted: set[str] = attrs.field(factory=set)
    _changed: trio.Event = attrs.field(factory=trio.Event)
    #: Set once the run is over (a terminal handover arrived).
    ended: trio.Event = attrs.field(factory=trio.Event)
    #: Execute calls waiting on this run now, and when the last one returned (trio
    #: clock): a run nobody has listened to for long is abandoned (crucible.agent.kernel.dispatch).
    listeners: int = 0
    last_listened: float = attrs.field(factory=trio.current_time)

    # -- producer side (the runner) --------------------------------------------------------

    def add_console(self, item: list[Any]) -> None:
        kind, data = item[0], item[1]
        if kind in STREAMS:
            self._add_stream(str(kind), str(data))
        else:
            self._add_rich(kind, data)
        self._notify()

    def _add_stream(self, kind: str, text: str) -> None:
        room = self.output.caps.stream_bytes - self._segment_bytes.get(kind, 0)
        piece, size = utf8_prefix(text, room)
        if piece:
            if not self._charge(size):
                self._note(kind, "held")
                return
            self._segment_bytes[kind] = self._segment_bytes.get(kind, 0) + size
            self._append_stream(kind, piece, size)
        if len(piece) < len(text):
            self._note(kind, kind)

    def _add_rich(self, kind: Any, data: Any) -> None:
        size = item_bytes(data)
        if self._segment_bytes.get(_RICH, 0) + size > self.output.caps.rich_bytes:
            self._note("stderr", _RICH)
        elif not self._charge(size):
            self._note("stderr", "held")
        else:
            self._segment_bytes[_RICH] = self._segment_bytes.get(_RICH, 0) + size
            self._pending.append(_Console(kind, data, size))

    def _charge(self, size: int) -> bool:
        if not self.output.charge(self, size):
            return False
        self.held += size
        return True

    def _release(self, size: int) -> None:
        if size:
            self.held -= size
            self.output.release(self, size)

    def _append_stream(self, kind: str, text: str, charged: int) -> None:
        last = self._pending[-1] if self._pending else None
        if isinstance(last, _Console) and last.kind == kind:
            last.data += text  # consecutive output of one stream is one item
            last.charged += charged
        else:
            self._pending.append(_Console(kind, text, charged))

    def _note(self, stream: str, reason: str) -> None:
        # Once per result and reason; notes are small and not charged.
        if reason not in self._noted:
            self._noted.add(reason)
            self._append_stream(stream, self.output.caps.note(reason), 0)

    def hand_over(self, handover: Handover) -> None:
        self._pending.append(handover)
        self._segment_bytes.clear()
        self._noted.clear()
        if handover.status in TERMINAL:
            self.state = RunState.DONE
            self.finish_order = self.output.ledger.next_finish()
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

    def discard_output(self) -> None:
        """Drop the pending items (not the handovers) to free memory, leaving a note."""
        handovers = [entry for entry in self._pending if isinstance(entry, Handover)]
        self._release(self.held)
        self._pending = [_Console("stderr", DISCARDED_NOTE, 0), *handovers]

    def forget(self) -> None:
        """The run is dropped: what it holds no longer counts."""
        self._release(self.held)
        self._pending.clear()

    # -- consumer side (an execute call) ---------------------------------------------------

    def _take(self) -> tuple[list[list[Any]], Handover | None]:
        console: list[list[Any]] = []
        taken = 0
        for index, entry in enumerate(self._pending):
            if isinstance(entry, Handover):
                del self._pending[: index + 1]
                self._release(taken)
                return console, entry
            console.append([entry.kind, entry.data])
            taken += entry.charged
        # The whole last segment went out: the next call's caps start afresh.
        self._pending.clear()
        self._segment_bytes.clear()
        self._noted.clear()
        self._release(taken)
        return console, None

    def _has_handover(self) -> bool:
        return any(isinstance(entry, Handover) for entry in self._pending)

    async def collect(self, flush_interval: float) -> ExecutionResult:
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
) -> ExecutionResult:
    """The ExecutionResult object of spec 4.6."""
    options = handover.options
    if handover.status == "waiting-input" and options is None:
        options = {"is_password": False}
    return ExecutionResult(
        run_id=run_id,
        status=handover.status,
        exit_code=handover.exit_code,
        console=console or [],
        options=options,
    )
