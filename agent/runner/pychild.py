"""The Python query kernel: a child process of the runner that keeps the user's globals.

User code runs here, not in the runner, so it cannot corrupt the runner or its socket;
if it kills this process the runner reports the run finished and starts a new child.

The child talks to the runner over one socket (`framing`, larger frame limit) and keeps
the order of everything it sends: Python-level ``sys.stdout``/``sys.stderr`` writes,
rich items and input requests all go through one queue, so stdout/stderr interleaving is
exact. Only fd-level output (subprocesses, C extensions) bypasses it, through the real
fds 1 and 2, which the runner reads directly; its order relative to Python-level output
is best effort.

Child → runner: ``{"op": "out", "stream": s, "text": t}``, ``{"op": "item", "item": [k, d]}``,
``{"op": "input", "seq": n, "password": b}``, ``{"op": "done"}``,
``{"op": "completion", "req_id": r, "items": [...]}``.
Runner → child: ``{"op": "exec", "code": c}``, ``{"op": "input", "seq": n, "text": t}``,
``{"op": "complete", "req_id": r, "code": c}``, ``{"op": "environ", "environ": {...}}``.
"""

from __future__ import annotations

import builtins
import codecs
import faulthandler
import getpass
import io
import linecache
import os
import queue
import re
import rlcompleter
import signal
import socket
import sys
import threading
import traceback
import types
from typing import Any

from . import framing
from .framing import CHANNEL_MAX_FRAME

#: Output is cut into pieces of this many characters...
PIECE = 32 * 1024
#: ...and a writer blocks while this much is waiting to be sent (bounded memory).
PENDING_LIMIT = 256 * 1024
MAX_COMPLETIONS = 200


class Channel:
    """The ordered, bounded outbox to the runner and the inbox from it.

    Only the writer thread writes to the socket and only the reader thread reads it:
    a KeyboardInterrupt (delivered to the main thread) can then never cut a frame in half.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._cond = threading.Condition()
        # Entries: ["out", stream, [parts], size] (merged while small) or ["msg", message].
        self._pending: list[list[Any]] = []
        self._size = 0
        self.inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._write_loop, name="crucible-writer", daemon=True).start()
        threading.Thread(target=self._read_loop, name="crucible-reader", daemon=True).start()

    def write(self, stream: str, text: str) -> None:
        for start in range(0, len(text), PIECE):
            piece = text[start : start + PIECE]
            with self._cond:
                while self._size >= PENDING_LIMIT:
                    self._cond.wait()
                last = self._pending[-1] if self._pending else None
                if last is not None and last[0] == "out" and last[1] == stream and last[3] < PIECE:
                    last[2].append(piece)
                    last[3] += len(piece)
                else:
                    self._pending.append(["out", stream, [piece], len(piece)])
                self._size += len(piece)
                self._cond.notify_all()

    def send(self, message: dict[str, Any]) -> None:
        with self._cond:
            self._pending.append(["msg", message])
            self._cond.notify_all()

    def emit_item(self, item: list[Any]) -> None:
        self.send({"op": "item", "item": item})

    def _write_loop(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._pending:
                        self._cond.wait()
                    batch, self._pending, self._size = self._pending, [], 0
                    self._cond.notify_all()
                for entry in batch:
                    if entry[0] == "out":
                        message = {"op": "out", "stream": entry[1], "text": "".join(entry[2])}
                    else:
                        message = entry[1]
                    self._sock.sendall(framing.encode(message))
        except BaseException:
            # The runner is gone (or the channel broke): nobody can see this kernel.
            os._exit(70)

    def _read_loop(self) -> None:
        decoder = framing.FrameDecoder(CHANNEL_MAX_FRAME)
        try:
            while True:
                data = self._sock.recv(256 * 1024)
                if not data:
                    break
                for message in decoder.feed(data):
                    if isinstance(message, framing.FrameError):
                        continue
                    if message.get("op") == "complete":
                        threading.Thread(
                            target=_complete, args=(self, message), daemon=True
                        ).start()
                    else:
                        self.inbox.put(message)
        except BaseException:
            pass
        os._exit(0)


class OutStream(io.TextIOBase):
    """``sys.stdout``/``sys.stderr``: text goes to the channel, tagged with the stream."""

    def __init__(self, channel: Channel, name: str, fd: int) -> None:
        super().__init__()
        self._channel = channel
        self._name = name
        self._fd = fd
        self.buffer = BinaryOut(self)

    @property
    def name(self) -> str:
        return f"<{self._name}>"

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def errors(self) -> str:  # type: ignore[override]
        return "replace"

    @property
    def line_buffering(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        # Subprocesses handed sys.stdout write to the real fd, which the runner reads.
        return self._fd

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            self._channel.write(self._name, text)
        return len(text)

    def flush(self) -> None:
        # The writer thread sends as soon as it can; there is nothing to flush here.
        pass


class BinaryOut:
    """``sys.stdout.buffer``: bytes are decoded as UTF-8 (invalid bytes replaced)."""

    def __init__(self, stream: OutStream) -> None:
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def write(self, data: bytes) -> int:
        self._stream.write(self._decoder.decode(bytes(data)))
        return len(data)

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True


class Kernel:
    """The user's namespace and the run loop."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.in_user_code = False
        self._cells = 0
        self._input_seq = 0
        module = types.ModuleType("__main__")
        module.__dict__["__builtins__"] = builtins
        # User classes must be picklable and `if __name__ == "__main__":` must hold.
        sys.modules["__main__"] = module
        self.namespace: dict[str, Any] = module.__dict__
        self.stdout = OutStream(channel, "stdout", 1)
        self.stderr = OutStream(channel, "stderr", 2)

    # -- input ----------------------------------------------------------------------------

    def read_input(self, prompt: object = "", password: bool = False) -> str:
        """``input()``/``getpass()``: ask the runner (→ ``waiting-input``) and wait."""
        if prompt:
            sys.stdout.write(str(prompt))
        sys.stdout.flush()
        self._input_seq += 1
        seq = self._input_seq
        self.channel.send({"op": "input", "seq": seq, "password": password})
        while True:
            # Interruptible: SIGINT raises KeyboardInterrupt here, in user code.
            message = self.channel.inbox.get()
            # A reply to an older, interrupted request is stale.
            if message.get("op") == "input" and message.get("seq") == seq:
                text = str(message.get("text", ""))
                return text[:-1] if text.endswith("\n") else text

    def install(self) -> None:
        sys.stdout, sys.stderr = self.stdout, self.stderr
        sys.stdin = InStream(self)
        builtins.input = self.read_input

        def _getpass(prompt: str = "Password: ", stream: object = None) -> str:
            return self.read_input(prompt, password=True)

        getpass.getpass = _getpass
        signal.signal(signal.SIGINT, self._on_sigint)
        # A fork of user code (multiprocessing) has no writer thread: its output must
        # go to the real fds, which the runner reads, or it would block once buffered.
        os.register_at_fork(after_in_child=_plain_stdio_after_fork)

    def _on_sigint(self, signum: int, frame: object) -> None:
        # Outside user code (idle, or sending results) an interrupt is a late arrival.
        if self.in_user_code:
            raise KeyboardInterrupt

    # -- runs -----------------------------------------------------------------------------

    def serve(self) -> None:
        while True:
            message = self.channel.inbox.get()
            if message.get("op") == "exec":
                _reap_leftovers()
                self.run_cell(str(message.get("code") or ""))
                self.channel.send({"op": "done"})
            elif message.get("op") == "environ":
                # A warm pool's kernel, claimed: the session's environment from now on
                # (the runner checked it: names and values are strings).
                os.environ.update(message.get("environ") or {})

    def run_cell(self, code: str) -> None:
        self._cells += 1
        filename = f"<input-{self._cells}>"
        # Tracebacks show the offending source lines.
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        try:
            compiled = compile(code, filename, "exec", dont_inherit=True)
            self.in_user_code = True
            try:
                exec(compiled, self.namespace)
            finally:
                self.in_user_code = False
        except SystemExit as exc:
            # A script's exit: the kernel (and its globals) stay; a message is shown.
            if exc.code is not None and not isinstance(exc.code, int):
                self.stderr.write(f"{exc.code}\n")
        except BaseException as exc:
            tb = exc.__traceback__
            # Drop this frame; what is left starts in the user's code.
            if tb is not None and tb.tb_frame.f_code is Kernel.run_cell.__code__:
                tb = tb.tb_next
            self.stderr.write("".join(traceback.format_exception(type(exc), exc, tb)))


def _reap_leftovers() -> None:
    # The runner killed whatever an earlier run forked from here (its sweep spares this
    # process only); collect those children so they do not sit as zombies, each one
    # holding a slot of the session's pids limit.
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _plain_stdio_after_fork() -> None:
    for name, fd in (("stdout", 1), ("stderr", 2)):
        if isinstance(getattr(sys, name), OutStream):
            stream = io.TextIOWrapper(
                io.FileIO(fd, "w", closefd=False),
                encoding="utf-8",
                errors="replace",
                line_buffering=True,
                write_through=True,
            )
            setattr(sys, name, stream)


class InStream(io.TextIOBase):
    """``sys.stdin``: every line read is one ``waiting-input`` round trip."""

    def __init__(self, kernel: Kernel) -> None:
        super().__init__()
        self._kernel = kernel

    def readable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return 0

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        return self._kernel.read_input() + "\n"

    def read(self, size: int | None = -1) -> str:
        return self.readline()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


_TOKEN = re.compile(r"[\w.]*$")


def _complete(channel: Channel, message: dict[str, Any]) -> None:
    items: list[str] = []
    try:
        match = _TOKEN.search(str(message.get("code") or ""))
        text = match.group(0) if match else ""
        if text and KERNEL is not None:
            completer = rlcompleter.Completer(KERNEL.namespace)
            for state in range(MAX_COMPLETIONS):
                candidate = completer.complete(text, state)
                if candidate is None:
                    break
                # rlcompleter adds "(" to callables and " "/":" to keywords: readline sugar.
                candidate = candidate.rstrip("( :")
                if candidate not in items:
                    items.append(candidate)
    except Exception:
        pass
    channel.send({"op": "completion", "req_id": message.get("req_id"), "items": items})


KERNEL: Kernel | None = None


def main(ctl_fd: int) -> None:
    """Entry point of the child (``main.py --python-child FD``)."""
    global KERNEL
    # A segfault in an extension still leaves a trace on fd 2, which the runner reads.
    faulthandler.enable()
    here = os.path.dirname(os.path.abspath(__file__))
    # Like an interactive interpreter: the working directory first, runner code gone.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path.insert(0, "")
    sys.argv = [""]
    site_dir = os.path.join(here, "pysite")
    if site_dir not in sys.path:
        sys.path.append(site_dir)
    channel = Channel(socket.socket(fileno=ctl_fd))
    kernel = KERNEL = Kernel(channel)
    kernel.install()
    try:
        import crucible_kernel

        crucible_kernel._emit = channel.emit_item
        builtins.display = crucible_kernel.display  # type: ignore[attr-defined]
    except ImportError:
        pass
    kernel.serve()
