"""Shell steps of batch and compile-and-run jobs: one ``/bin/sh -c`` process on a pty.

The program's stdin and stdout are a pseudo-terminal (so C stdio line-buffers stdout
and flushes a prompt before reading stdin, as on a terminal); stderr is a pipe, so the
two streams stay apart. The terminal is set up as a plain line channel: no echo (the
user's input is not program output), no signal characters (interrupts come from the
agent's ``interrupt``), no output post-processing (``\\n`` stays ``\\n``); canonical
mode stays on so that a ``\\x04`` in an input message is end-of-file for the program.
"""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable

from . import stdin_probe
from .flow import Flow
from .loop import Loop, Timer
from .reaper import Reaper
from .streams import OutputStream

#: How often a running step is polled (exit, waiting for input).
TICK = 0.02
#: Quiet time before probing /proc for a blocked read, and the probe interval.
PROBE_AFTER = 0.1
PROBE_EVERY = 0.1
#: After the program exits, how long leftover descendants may keep the terminal open.
DRAIN_GRACE = 0.5

Output = Callable[[str, str], None]


def _take_terminal() -> None:
    # Runs in the child between fork and exec, after setsid(): make stdin (the pty
    # slave) the controlling terminal so getpass(3) and /dev/tty work.
    try:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    except OSError:
        pass


def _configure_terminal(fd: int) -> None:
    attrs = termios.tcgetattr(fd)
    attrs[1] &= ~termios.OPOST  # oflag
    attrs[3] &= ~(termios.ECHO | termios.ECHONL | termios.ISIG | termios.IEXTEN)  # lflag
    attrs[3] |= termios.ICANON
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))


class ShellStep:
    """One shell command whose output flows to `output` and stdin comes from `feed`.

    `on_exit(exit_code)` is called once, after the output is drained; `on_waiting()`
    when the program seems blocked reading its terminal (see `stdin_probe`).
    """

    def __init__(
        self,
        loop: Loop,
        flow: Flow,
        reaper: Reaper,
        command: str,
        *,
        workdir: str,
        output: Output,
        on_exit: Callable[[int], None],
        on_waiting: Callable[[], None],
        interactive: bool = True,
    ) -> None:
        self._loop = loop
        self._reaper = reaper
        self._interactive = interactive
        self._flow = flow
        self._command = command
        self._workdir = workdir
        self._output = output
        self._on_exit = on_exit
        self._on_waiting = on_waiting
        self._proc: subprocess.Popen[bytes] | None = None
        #: The program's stdout is the terminal's master side, which also takes its input.
        self._stdout: OutputStream | None = None
        self._stderr: OutputStream | None = None
        self._slave = -1
        self._tty = ""
        self._pending_input = b""
        self._timer: Timer | None = None
        self._exit_code: int | None = None
        self._drain_deadline = 0.0
        self._killed = False
        self._done = False
        self.waiting = False
        self._last_activity = time.monotonic()
        self._last_probe = 0.0
        self._probe_hits = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        master, slave = pty.openpty()
        _configure_terminal(slave)
        err_read, err_write = os.pipe()
        # A build or clean step reads nothing: stdin is /dev/null, so that a tool chain
        # idling in poll() on its inherited stdin (GHC waiting for its linker) is not
        # taken for a program waiting for the user.
        stdin = slave if self._interactive else subprocess.DEVNULL
        try:
            self._proc = subprocess.Popen(
                ["/bin/sh", "-c", self._command],
                stdin=stdin,
                stdout=slave,
                stderr=err_write,
                cwd=self._workdir,
                start_new_session=True,
                preexec_fn=_take_terminal,
            )
        except OSError as exc:
            for fd in (master, slave, err_read, err_write):
                os.close(fd)
            self._output("stderr", f"cannot start /bin/sh: {exc}\n")
            self._exit_code = 127
            self._timer = self._loop.call_later(0, self._finish)
            return
        os.close(err_write)
        self._reaper.own(self._proc.pid)
        self._slave = slave
        self._tty = os.ttyname(slave)
        self._stdout = OutputStream(self._loop, self._flow, master, "stdout", self._read)
        self._stderr = OutputStream(self._loop, self._flow, err_read, "stderr", self._read)
        self._timer = self._loop.call_later(TICK, self._tick)

    def feed(self, text: str) -> bool:
        """Type `text` (one line; a newline is added) into the program's terminal.

        True: the step took it (a program that has ended no longer reads it).
        """
        if self._stdout is None or self._stdout.closed or self._exit_code is not None:
            return True
        if not text.endswith("\n"):
            text += "\n"
        self._pending_input += text.encode("utf-8", "surrogateescape")
        self.waiting = False
        self._probe_hits = 0
        self._last_activity = time.monotonic()
        self._write_input()
        return True

    def interrupt(self) -> None:
        self._signal(signal.SIGINT)

    def kill(self) -> None:
        """Stop the program and everything it started, now."""
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self._proc is not None and not self._done:
            try:
                os.killpg(self._proc.pid, signum)
            except OSError:
                pass

    # -- I/O ------------------------------------------------------------------------------

    def _write_input(self) -> None:
        assert self._stdout is not None
        master = self._stdout.fd
        while self._pending_input:
            try:
                sent = os.write(master, self._pending_input)
            except BlockingIOError:
                self._loop.add_writer(master, self._write_input)
                return
            except OSError:
                self._pending_input = b""
                break
            self._pending_input = self._pending_input[sent:]
        self._loop.remove_writer(master)

    def _read(self, stream: str, text: str) -> None:
        self._last_activity = time.monotonic()
        self._probe_hits = 0
        if text:
            self._output(stream, text)

    def _streams(self) -> list[OutputStream]:
        return [s for s in (self._stdout, self._stderr) if s is not None]

    def _drain_nowait(self) -> None:
        """Read what is already there (before reporting waiting-input or the exit)."""
        for stream in self._streams():
            stream.drain()  # bounded: the flow may pause us anyway

    # -- polling --------------------------------------------------------------------------

    def _tick(self) -> None:
        assert self._proc is not None
        self._timer = None
        now = time.monotonic()
        if self._exit_code is None:
            code = self._proc.poll()
            if code is not None:
                self._reaper.disown(self._proc.pid)
                self._exit_code = code
                self._drain_deadline = now + DRAIN_GRACE
                # Our copy of the slave would keep the master from ever reporting EIO.
                os.close(self._slave)
                self._slave = -1
            elif not self.waiting:
                self._probe(now)
        if self._exit_code is not None:
            if all(stream.closed for stream in self._streams()):
                self._finish()
                return
            if now >= self._drain_deadline:
                if not self._killed:
                    # Background children still hold the terminal: end them.
                    self._killed = True
                    self._signal(signal.SIGKILL)
                    self._drain_deadline = now + 0.2
                else:
                    for stream in self._streams():
                        stream.close()
                    self._finish()
                    return
        self._timer = self._loop.call_later(TICK, self._tick)

    def _probe(self, now: float) -> None:
        if now - self._last_activity < PROBE_AFTER or now - self._last_probe < PROBE_EVERY:
            return
        self._last_probe = now
        assert self._proc is not None
        if stdin_probe.tty_input_pending(self._slave) == 0 and stdin_probe.waits_for_terminal(
            self._proc.pid, self._tty
        ):
            # Two samples in a row: one could catch a read that is about to return.
            self._probe_hits += 1
            if self._probe_hits >= 2:
                self._drain_nowait()
                self.waiting = True
                self._on_waiting()
        else:
            self._probe_hits = 0

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
        for stream in self._streams():
            stream.close()
        if self._slave >= 0:
            os.close(self._slave)
        self._slave = -1
        # Whatever the program left running in its session goes with it.
        if self._proc is not None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except OSError:
                pass
        code = self._exit_code if self._exit_code is not None else -1
        self._on_exit(code)
