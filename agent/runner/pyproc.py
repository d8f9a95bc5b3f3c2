"""The runner's handle on its Python child (see pychild.py for the other side)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any, Protocol

from . import framing
from .channel import FramedSocket
from .flow import Flow
from .framing import CHANNEL_MAX_FRAME
from .loop import Loop
from .reaper import Reaper
from .streams import OutputStream

HERE = os.path.dirname(os.path.abspath(__file__))
MAIN = os.path.join(HERE, "main.py")
PYSITE = os.path.join(HERE, "pysite")
MPLBACKEND = "module://crucible_mpl_backend"


class ChildEvents(Protocol):
    """What a Python run receives from the child."""

    def output(self, kind: str, data: Any) -> None: ...

    def waiting_input(self, is_password: bool) -> None: ...

    def child_done(self, exit_code: int) -> None: ...


class PythonChild:
    """One interpreter process; `on_exit` is called once when it is gone."""

    def __init__(
        self,
        loop: Loop,
        flow: Flow,
        reaper: Reaper,
        *,
        workdir: str,
        on_completion: Callable[[str, list[str]], None],
        on_exit: Callable[[PythonChild], None],
        command: list[str] | None = None,
    ) -> None:
        self._reaper = reaper
        self._on_completion = on_completion
        self._on_exit = on_exit
        self.run: ChildEvents | None = None
        self._input_seq: int | None = None
        self.alive = True
        ours, theirs = socket.socketpair()
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        env = dict(os.environ)
        env["MPLBACKEND"] = MPLBACKEND
        env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), PYSITE) if p)
        # Python-level output has its own channel; keep the C-level one unbuffered too.
        env["PYTHONUNBUFFERED"] = "1"
        try:
            # Another interpreter speaking the same channel protocol (nodechild.js) may
            # stand in for pychild.py; the channel's fd number ends its command line.
            argv = [*(command or [sys.executable, MAIN, "--python-child"]), str(theirs.fileno())]
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out_write,
                stderr=err_write,
                cwd=workdir,
                env=env,
                pass_fds=[theirs.fileno()],
                # Its own process group: an interrupt reaches it and its subprocesses only.
                start_new_session=True,
            )
        finally:
            theirs.close()
            os.close(out_write)
            os.close(err_write)
        # Its exit status is ours to collect, and sweeps after runs spare it (only it:
        # what user code forks from it goes with the run).
        reaper.own(self.proc.pid)
        reaper.keep(self.proc.pid)
        #: Output written below Python (os.system, C extensions); Python's own goes
        #: through the channel.
        self._pipes = [
            OutputStream(loop, flow, out_read, "stdout", self._pipe_output),
            OutputStream(loop, flow, err_read, "stderr", self._pipe_output),
        ]
        self._ctl = FramedSocket(
            loop,
            ours,
            max_frame=CHANNEL_MAX_FRAME,
            on_message=self._on_message,
            on_close=self._on_ctl_closed,
            flow=flow,
        )

    # -- commands -------------------------------------------------------------------------

    def execute(self, run: ChildEvents, code: str) -> None:
        self.run = run
        self._input_seq = None
        self._ctl.send({"op": "exec", "code": code})

    def feed(self, text: str) -> bool:
        """Answer the pending input request; False when there is none."""
        if self._input_seq is None:
            return False
        self._ctl.send({"op": "input", "seq": self._input_seq, "text": text})
        self._input_seq = None
        return True

    @property
    def waiting(self) -> bool:
        return self._input_seq is not None

    def interrupt(self) -> None:
        self._killpg(signal.SIGINT)

    def update_environ(self, environ: dict[str, str]) -> None:
        self._ctl.send({"op": "environ", "environ": environ})

    def complete(self, req_id: str, code: str) -> None:
        self._ctl.send({"op": "complete", "req_id": req_id, "code": code})

    def kill(self) -> None:
        self._killpg(signal.SIGKILL)
        self._ctl.close()

    def _killpg(self, signum: int) -> None:
        if self.alive:
            try:
                os.killpg(self.proc.pid, signum)
            except OSError:
                pass

    # -- events ---------------------------------------------------------------------------

    def _on_message(self, message: dict[str, Any] | framing.FrameError) -> None:
        if isinstance(message, framing.FrameError):
            return
        op = message.get("op")
        run = self.run
        if op == "out":
            stream = message.get("stream")
            if run is not None and stream in ("stdout", "stderr"):
                run.output(str(stream), str(message.get("text", "")))
        elif op == "item":
            item = message.get("item")
            if (
                run is not None
                and isinstance(item, list)
                and len(item) == 2
                and item[0] in ("media", "html")
            ):
                run.output(item[0], item[1])
        elif op == "input":
            seq = message.get("seq")
            if run is not None and isinstance(seq, int):
                self._input_seq = seq
                run.waiting_input(bool(message.get("password")))
        elif op == "done":
            self._input_seq = None
            self._drain_pipes()
            self.run = None
            if run is not None:
                run.child_done(0)
        elif op == "completion":
            items = message.get("items")
            self._on_completion(
                str(message.get("req_id")),
                [str(i) for i in items] if isinstance(items, list) else [],
            )

    def _pipe_output(self, name: str, text: str) -> None:
        if text and self.run is not None:
            self.run.output(name, text)

    def _drain_pipes(self, limit: int = 64) -> None:
        # fd-level output that is already written (e.g. by os.system) belongs to the run
        # that is ending; bounded, since a background process may keep writing. Once the
        # child is gone nothing is left to pause: what it wrote is read regardless.
        for pipe in self._pipes:
            pipe.drain(limit, despite_flow=not self.alive)

    def _on_ctl_closed(self) -> None:
        # The child died (or closed its channel, which only dying does): collect it.
        self.alive = False
        self._killpg_group_leftovers()
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reaper.disown(self.proc.pid)
        self._reaper.release(self.proc.pid)
        self._drain_pipes(limit=256)
        for pipe in self._pipes:
            pipe.close()
        run, self.run = self.run, None
        self._input_seq = None
        if run is not None:
            run.child_done(code)
        self._on_exit(self)

    def _killpg_group_leftovers(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
