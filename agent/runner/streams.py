"""One output of a user process (a pipe, or a terminal's master side), read as the flow allows.

Shell steps and the Python child read their programs' output the same way: without
blocking, only while the agent connection keeps up (`flow.py`: a paused stream stops
being read, so the program blocks on its own full pipe), decoded as UTF-8 with
replacement characters, a character split between two reads kept for the next.
"""

from __future__ import annotations

import codecs
import errno
import os
from collections.abc import Callable

from .flow import Flow
from .loop import Loop

READ_CHUNK = 16 * 1024

#: ``on_output(name, text)``: called after every read; `text` may be empty (half a
#: character waits for the rest).
OnOutput = Callable[[str, str], None]


class OutputStream:
    """The descriptor `fd` (ours: this closes it) of output `name` (``stdout``/``stderr``)."""

    def __init__(self, loop: Loop, flow: Flow, fd: int, name: str, on_output: OnOutput) -> None:
        self._loop = loop
        self._flow = flow
        self.fd = fd
        self.name = name
        self._on_output = on_output
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._readable)

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def read(self, *, despite_flow: bool = False) -> bool:
        """Read one chunk; False once closed, paused or (for now) empty.

        `despite_flow`: read even while the flow is paused (the program is gone, and
        what it left belongs to the run that is ending).
        """
        fd = self.fd
        if fd < 0:
            return False
        if self._flow.paused and not despite_flow:
            # Stop reading: the program blocks on its full pty/pipe until the agent
            # catches up (see flow.py).
            self._loop.remove_reader(fd)
            self._flow.wait(self._resume)
            return False
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return False
        except OSError as exc:
            # EIO on a terminal's master: every holder of the other side is gone.
            if exc.errno != errno.EIO:
                self._on_output("stderr", f"[runner] read error: {exc}\n")
            data = b""
        if not data:
            self.close()
            return False
        self._on_output(self.name, self._decoder.decode(data))
        return True

    def drain(self, limit: int = 64, *, despite_flow: bool = False) -> None:
        """Read what is already there, at most `limit` chunks (a background process may
        keep writing)."""
        for _ in range(limit):
            if not self.read(despite_flow=despite_flow):
                break

    def _readable(self) -> None:
        self.read()

    def _resume(self) -> None:
        if self.fd >= 0:
            self._loop.add_reader(self.fd, self._readable)

    def close(self) -> None:
        """Stop reading and close the descriptor; the last half character, if any, is
        output as a replacement character."""
        if self.fd < 0:
            return
        tail = self._decoder.decode(b"", final=True)
        if tail:
            self._on_output(self.name, tail)
        self._loop.forget(self.fd)
        os.close(self.fd)
        self.fd = -1
