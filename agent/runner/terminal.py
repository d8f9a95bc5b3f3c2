"""The kernel's terminal (spec 5.3): an interactive ``bash`` login shell of user work on
a real pseudo-terminal, shared by every client attached, respawned when it exits.

Output is read from the terminal only while every attached client has credit (the
slowest one paces the screen: the manager disconnects a client that stops reading), so
a flood blocks the program on its own full terminal. Keystrokes are written as they
come (Ctrl-C, Ctrl-D and the rest are the line discipline's business), and a resize
sets the terminal's size, which delivers SIGWINCH to its foreground job.

The shell and everything it starts are kept out of the run reaper's sweeps (they are
not a run's processes) but live in the container, under its limits.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import signal
import struct
import termios
import time
from typing import Any

from .byte_streams import CHUNK, ByteStream, ReadGate, RunnerStreams

#: Seconds between checks that the shell still runs (a shell that exited while a
#: background job holds the terminal open gives no EOF).
CHECK_EVERY = 0.5
#: Seconds before a shell that exited is respawned; doubled (up to RESPAWN_MAX) while
#: shells die within SHORT_LIFE of their start (a broken ~/.bash_profile, no bash).
RESPAWN_DELAY = 0.2
RESPAWN_MAX = 5.0
SHORT_LIFE = 2.0


def shell_environment(base: dict[str, str], workdir: str) -> dict[str, str]:
    env = dict(base)
    env.update(
        {
            "TERM": "xterm-256color",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": workdir,
            "PWD": workdir,
            "USER": "work",
            "LOGNAME": "work",
            "SHELL": "/bin/bash",
        }
    )
    return env


class TerminalStream(ByteStream):
    """One client of the terminal."""

    def __init__(self, terminal: Terminal, stream_id: int, credit: int) -> None:
        super().__init__(terminal.streams, stream_id, credit)
        self.terminal = terminal

    def output_allowed(self) -> None:
        self.terminal.update()

    def write_input(self) -> None:
        self.terminal.write_input()

    def resize(self, rows: int, cols: int) -> None:
        self.terminal.resize(rows, cols)

    def release(self) -> None:
        self.terminal.detach(self)


class Terminal:
    def __init__(self, streams: RunnerStreams) -> None:
        self.streams = streams
        self.loop = streams.ctx.loop
        self.clients: list[TerminalStream] = []
        self.fd = -1
        self.pid = 0
        self.size = (24, 80)
        self._gate = ReadGate(streams, self._readable, self.update)
        self._writing = False
        self._respawn_timer: Any = None
        self._check_timer: Any = None
        self._started_at = 0.0
        self._respawn_delay = RESPAWN_DELAY

    # -- clients --------------------------------------------------------------------------

    def attach(self, stream_id: int, credit: int, size: tuple[int, int]) -> TerminalStream:
        client = TerminalStream(self, stream_id, credit)
        self.clients.append(client)
        if self.fd < 0:
            self.size = size
            self.spawn()
        self.streams.opened(client)
        self.update()
        return client

    def detach(self, client: TerminalStream) -> None:
        if client in self.clients:
            self.clients.remove(client)
        self.update()

    # -- the shell ------------------------------------------------------------------------

    def spawn(self) -> None:
        self._respawn_timer = None
        env = shell_environment(dict(os.environ), self.streams.ctx.workdir)
        pid, fd = pty.fork()
        if pid == 0:  # the child: becomes the shell, or exits
            try:
                signal.set_wakeup_fd(-1)
                for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
                    signal.signal(signum, signal.SIG_DFL)
                os.chdir(self.streams.ctx.workdir)
                os.execvpe("bash", ["-bash"], env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self._started_at = time.monotonic()
        self.streams.ctx.reaper.own(pid)
        self.streams.ctx.reaper.keep_tree(pid)
        os.set_blocking(fd, False)
        self._apply_size()
        self._writing = False
        self._check_timer = self.loop.call_later(CHECK_EVERY, self._check)
        self.update()
        self.write_input()  # what was typed while no shell ran

    def _check(self) -> None:
        self._check_timer = None
        if self.pid and self._exited():
            self._ended()
        elif self.fd >= 0:
            self._check_timer = self.loop.call_later(CHECK_EVERY, self._check)

    def _exited(self) -> bool:
        try:
            done, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return True
        return done == self.pid

    def _ended(self) -> None:
        """The shell is gone (Ctrl-D, ``exit``, killed): a new one, if anyone watches."""
        if self.fd >= 0:
            self._gate.forget()
            self.loop.forget(self.fd)
            os.close(self.fd)
        if self.pid:
            self._exited()
            self.streams.ctx.reaper.release(self.pid)
            self.streams.ctx.reaper.disown(self.pid)
        self.fd, self.pid = -1, 0
        if self._check_timer is not None:
            self._check_timer.cancel()
            self._check_timer = None
        if time.monotonic() - self._started_at < SHORT_LIFE:
            self._respawn_delay = min(self._respawn_delay * 2, RESPAWN_MAX)
        else:
            self._respawn_delay = RESPAWN_DELAY
        if self.clients and self._respawn_timer is None:
            self._respawn_timer = self.loop.call_later(self._respawn_delay, self.spawn)

    def resize(self, rows: int, cols: int) -> None:
        self.size = (rows, cols)
        self._apply_size()

    def _apply_size(self) -> None:
        if self.fd >= 0:
            rows, cols = self.size
            # The kernel sends SIGWINCH to the terminal's foreground process group.
            fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    # -- output ---------------------------------------------------------------------------

    def update(self) -> None:
        """Read the terminal while every client has credit and the agent keeps up."""
        ready = self.fd >= 0 and bool(self.clients) and all(c.credit > 0 for c in self.clients)
        self._gate.set(self.fd, ready)

    def _readable(self) -> None:
        budget = min([CHUNK] + [c.credit for c in self.clients])
        try:
            data = os.read(self.fd, max(1, budget))
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            data = b""  # EIO: every slave descriptor closed, the shell is gone
        if not data:
            self._ended()
            return
        for client in list(self.clients):
            client.emit(data)
        self.update()

    # -- input ----------------------------------------------------------------------------

    def write_input(self) -> None:
        if self.fd < 0:
            return
        for client in list(self.clients):
            while client.inbuf:
                try:
                    n = os.write(self.fd, client.inbuf)
                except BlockingIOError:
                    if not self._writing:
                        self._writing = True
                        self.loop.add_writer(self.fd, self._writable)
                    return
                except OSError:
                    return  # the shell is going; _check respawns it
                client.written(n)
        if self._writing:
            self._writing = False
            self.loop.remove_writer(self.fd)

    def _writable(self) -> None:
        self.write_input()
