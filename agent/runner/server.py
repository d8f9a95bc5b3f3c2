"""The runner's server: the agent socket, the message handlers and the run queue."""

from __future__ import annotations

import collections
import os
import signal
import socket
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any

from . import framing
from .channel import FramedSocket
from .context import RunnerContext
from .environ import apply_environ
from .flow import Flow
from .jobs import Job, PythonQueryJob, batch_job, compile_and_run_job
from .languages import Recipe
from .loop import Loop, Timer
from .pyproc import PythonChild
from .reaper import Reaper, become_reaper, forbid_inspection

if TYPE_CHECKING:
    from .byte_streams import RunnerStreams
    from .services import ServiceStarter

#: 2: the runner dials the agent; ``hello`` names the run in progress.
PROTOCOL = 2
#: Redial backoff after the agent connection dropped or was refused, seconds.
DIAL_FIRST = 0.02
DIAL_MAX = 0.5
#: Collect adopted orphans at most this long after a SIGCHLD.
REAP_DELAY = 0.05
#: Unsent bytes to the agent above which output sources stop being read, and below
#: which they resume.
HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024
#: Runs the agent may queue behind the current one (it serialises runs itself).
MAX_QUEUED = 64
#: Seconds a completion may take before it answers "no suggestions"; within the agent's
#: ``agent.complete_timeout`` (5 s), so the agent hears the answer.
COMPLETION_TIMEOUT = 3.0
#: Where user code runs unless told otherwise: the kernel contract's working directory
#: (``crucible.kernels.contract.WORK_DIR``), written again here on purpose since the
#: runner cannot import it; a unit test keeps the two equal.
WORK_DIR = "/home/work"
#: Query handlers backed by a persistent interpreter child (state kept between runs),
#: and the command of each child that is not the Python one (see pyproc.PythonChild).
PERSISTENT_QUERIES = ("python-repl", "node-repl")
CHILD_COMMANDS = {
    "node-repl": ["node", os.path.join(os.path.dirname(os.path.abspath(__file__)), "nodechild.js")]
}


def log(message: str) -> None:
    """The runner's own diagnostics go to its stderr (the container log)."""
    print(f"crucible-runner: {message}", file=sys.stderr, flush=True)


class Runner:
    """One kernel's runner: dials the agent, runs one run at a time.

    The agent owns the socket (in a directory the container can only read) and the
    runner connects to it, so nothing in the container decides where the agent's
    connection goes. The connection drops when the agent restarts (and its old socket
    with it); the runner then dials again with a short backoff, meanwhile holding the
    messages it could not send (up to `HIGH_WATER`, then output stops being read).
    """

    def __init__(self, recipe: Recipe, socket_path: str, workdir: str) -> None:
        self.recipe = recipe
        self.socket_path = socket_path
        self.workdir = workdir
        self.loop = Loop()
        self.flow = Flow()
        self.reaper = Reaper()
        self.conn: FramedSocket | None = None
        self.job: Job | None = None
        self.queue: collections.deque[dict[str, Any]] = collections.deque()
        self._child: PythonChild | None = None
        self._completions: dict[str, Timer] = {}
        #: Frames for the agent while there is no connection, and their total size.
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        #: The last run, while its ``finished`` waits in the outbox (see `_hello`).
        self._undelivered: Job | None = None
        self._dial_delay = DIAL_FIRST
        self._dial_timer: Timer | None = None
        self._signals = -1
        self._reap_timer: Timer | None = None
        self._context = RunnerContext(self.loop, self.reaper, workdir, self.send)
        #: The terminal's and tunnels' streams, and the apps: made when first asked for
        #: (importing them would slow every kernel's start for what few runs use).
        self._streams: RunnerStreams | None = None
        self._services: ServiceStarter | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT; then stop every process started for the user."""
        if not become_reaper():
            log("cannot become the reaper of orphaned processes; daemons may escape runs")
        if not forbid_inspection():
            log("cannot clear the dumpable flag; user code may read this process's memory")
        self._watch_children()
        if self.recipe.query in PERSISTENT_QUERIES:
            # Start the interpreter now so that the first run does not pay for it.
            self.python_child()
        self.dial()
        try:
            self.loop.run()
        finally:
            self.close()

    def streams(self) -> RunnerStreams:
        if self._streams is None:
            from .byte_streams import RunnerStreams

            self._streams = RunnerStreams(self._context, self.flow)
        return self._streams

    def services(self) -> ServiceStarter:
        if self._services is None:
            from .services import ServiceStarter

            self._services = ServiceStarter(self._context, self.recipe)
        return self._services

    def close(self) -> None:
        if self._services is not None:
            self._services.stop_all()
        if self.job is not None:
            self.job.kill()
        if self._child is not None:
            self._child.kill()
        self.reaper.sweep()

    def _watch_children(self) -> None:
        # SIGCHLD wakes the loop (through the wakeup fd) to collect adopted orphans.
        read, write = os.pipe()
        os.set_blocking(read, False)
        os.set_blocking(write, False)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        self._signals = read
        self.loop.add_reader(read, self._on_signal)

    def _on_signal(self) -> None:
        try:
            while os.read(self._signals, 4096):
                pass
        except BlockingIOError:
            pass
        if self._reap_timer is None:
            # Coalesced: a fork bomb's SIGCHLD storm costs one /proc scan per delay.
            self._reap_timer = self.loop.call_later(REAP_DELAY, self._reap)

    def _reap(self) -> None:
        self._reap_timer = None
        if self._services is not None:
            self._services.collect()
        self.reaper.reap_orphans()

    # -- the agent connection ---------------------------------------------------------------

    def dial(self) -> None:
        """Connect to the agent's socket; on failure try again later (backoff)."""
        self._dial_timer = None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(self.socket_path)
        except OSError:
            # ENOENT/ECONNREFUSED: the agent is not listening (yet, or any more);
            # EAGAIN: its backlog is full. All mean "later".
            sock.close()
            self._dial_timer = self.loop.call_later(self._dial_delay, self.dial)
            self._dial_delay = min(self._dial_delay * 2, DIAL_MAX)
            return
        self._dial_delay = DIAL_FIRST
        self._attach(sock)

    def _attach(self, sock: socket.socket) -> None:
        conn = FramedSocket(
            self.loop,
            sock,
            max_frame=framing.MAX_FRAME_BYTES,
            on_message=self._on_message,
            on_close=lambda: self._on_conn_closed(conn),
            on_sent=self._on_sent,
        )
        self.conn = conn
        conn.send(self._hello())
        if conn.closed:
            return  # broke at once; the outbox waits for the next dial
        # Runs queued behind the current one came from an agent that is gone; the new
        # one does not know them, so they must not run (no one would limit their time).
        while self.queue:
            run_id = self.queue.popleft()["run_id"]
            self._outbox.append(framing.encode(_finished(run_id, -1)))
        outbox, self._outbox, self._outbox_bytes = self._outbox, [], 0
        self._undelivered = None
        for frame in outbox:
            conn.send_frame(frame)
        if self.job is not None and self.job.waiting_password is not None:
            # The new agent cannot know that the current run waits for input.
            conn.send(self.job.waiting_message())
        self._on_sent()

    def _hello(self) -> dict[str, Any]:
        """``hello`` names the run in progress (or whose end is still to be delivered),
        so a restarted agent adopts it and keeps holding it to its time limit."""
        job = self.job or self._undelivered
        run = None
        if job is not None:
            run = {
                "run_id": job.run_id,
                "mode": job.mode,
                "elapsed": round(time.monotonic() - job.started_at, 3),
                "finished": job.done,
            }
        return {"op": "hello", "lang": self.recipe.name, "protocol": PROTOCOL, "run": run}

    def _on_conn_closed(self, conn: FramedSocket) -> None:
        if self.conn is conn:
            self.conn = None
            # Streams belong to the agent connection that opened them.
            if self._streams is not None:
                self._streams.close_all()
            if self._dial_timer is None:
                self._dial_timer = self.loop.call_later(self._dial_delay, self.dial)

    def _on_sent(self) -> None:
        if self.flow.paused and self.conn is not None and self.conn.unsent < LOW_WATER:
            self.flow.set_paused(False)

    def send(self, message: dict[str, Any]) -> None:
        """Send to the agent, or hold the message until it is connected again."""
        conn = self.conn
        try:
            frame = framing.encode(message)
        except ValueError:
            # Not JSON-serialisable (should not happen): report instead of dying.
            frame = framing.encode(
                {"op": "error", "message": "runner produced an unserialisable message"}
            )
        if conn is None:
            self._outbox.append(frame)
            self._outbox_bytes += len(frame)
            if self._outbox_bytes > HIGH_WATER:
                self.flow.set_paused(True)
            return
        data_size = conn.unsent
        conn.send_frame(frame)
        if conn.unsent > HIGH_WATER and conn.unsent > data_size:
            self.flow.set_paused(True)

    def error(self, message: str, **ids: Any) -> None:
        self.send({"op": "error", "message": message, **ids})

    # -- agent messages -------------------------------------------------------------------

    def _on_message(self, message: dict[str, Any] | framing.FrameError) -> None:
        if isinstance(message, framing.FrameError):
            self.error(str(message))
            return
        try:
            self._dispatch(message)
        except Exception as exc:
            # One bad message must never take the runner down.
            log("error handling {!r}:\n{}".format(message.get("op"), traceback.format_exc()))
            self.error(f"runner failed to handle {message.get('op')!r}: {exc}")

    def _dispatch(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "execute":
            self._on_execute(message)
        elif op == "input":
            self._on_input(message)
        elif op == "interrupt":
            # With a run_id, only that run: it may have ended and another started.
            run_id = message.get("run_id")
            if self.job is not None and run_id in (None, self.job.run_id):
                self.job.interrupt()
        elif op == "kill":
            self._on_kill(message)
        elif op == "complete":
            self._on_complete(message)
        elif isinstance(op, str) and op.startswith("stream-"):
            self.streams().handle(message)
        elif op == "start_service":
            self.services().request(message)
        elif op == "ping":
            self.send({"op": "pong", "req_id": message.get("req_id")})
        elif op == "environ":
            apply_environ(message.get("environ"), self._child)
        else:
            self.error(f"unknown op {op!r}")

    def _on_execute(self, message: dict[str, Any]) -> None:
        run_id = message.get("run_id")
        mode = message.get("mode")
        code = message.get("code")
        options = message.get("options")
        if not isinstance(run_id, str) or not run_id:
            self.error("execute needs a string run_id")
            return
        problem = None
        if mode not in ("query", "batch"):
            problem = f"unknown mode {mode!r}"
        elif code is not None and not isinstance(code, str):
            problem = "code must be a string or null"
        elif options is not None and not isinstance(options, dict):
            problem = "options must be an object or null"
        elif len(self.queue) >= MAX_QUEUED:
            problem = "too many queued runs"
        if problem is not None:
            self.error(problem, run_id=run_id)
            # The agent waits for this run to end; end it as a Backend.AI-side error.
            self.send(_finished(run_id, -1))
            return
        self.queue.append(message)
        self._start_next()

    def _on_kill(self, message: dict[str, Any]) -> None:
        """End run `run_id` for good (its owner cancelled it and it outlived the
        interrupt): its processes are killed, ``finished`` follows. For a persistent
        interpreter that means a new one for the next run: the session's state is lost."""
        run_id = message.get("run_id")
        for queued in list(self.queue):
            if queued["run_id"] == run_id:
                self.queue.remove(queued)
                self.send({"op": "finished", "run_id": run_id, "exit_code": -1})
                return
        if self.job is not None and self.job.run_id == run_id:
            self.job.cancel()

    def _start_next(self) -> None:
        # Not while the agent is away: see `_attach`.
        while self.job is None and self.queue and self.conn is not None:
            message = self.queue.popleft()
            run_id = message["run_id"]
            try:
                job = self._make_job(message)
            except Exception as exc:
                log(f"cannot start run {run_id}:\n{traceback.format_exc()}")
                self.error(f"cannot start run: {exc}", run_id=run_id)
                self.send(_finished(run_id, -1))
                continue
            self.job = job
            job.start()

    def _make_job(self, message: dict[str, Any]) -> Job:
        run_id = message["run_id"]
        code = message.get("code") or ""
        if message["mode"] == "batch":
            return batch_job(self, run_id, message.get("options") or {})
        if self.recipe.query in PERSISTENT_QUERIES:
            return PythonQueryJob(self, run_id, code)
        if self.recipe.query == "compile-and-run":
            return compile_and_run_job(self, run_id, code)
        raise ValueError(f"query mode is not available for {self.recipe.name!r}")

    def end_of_run(self) -> None:
        """Before a run reports ``finished``: every process it started goes."""
        self.reaper.sweep()

    def job_finished(self, job: Job) -> None:
        if self.job is job:
            self.job = None
        if self.conn is None:
            self._undelivered = job
        # Not from inside the finishing job's call stack.
        self.loop.call_later(0, self._start_next)

    def _on_input(self, message: dict[str, Any]) -> None:
        run_id = message.get("run_id")
        text = message.get("text")
        if not isinstance(text, str):
            text = "" if text is None else str(text)
        job = self.job
        if job is None or job.run_id != run_id:
            self.error("input for a run that is not running", run_id=run_id)
            return
        if not job.feed(text):
            self.error("the run is not waiting for input", run_id=run_id)

    def _on_complete(self, message: dict[str, Any]) -> None:
        req_id = str(message.get("req_id"))
        code = message.get("code")
        if self.recipe.query not in PERSISTENT_QUERIES or not isinstance(code, str):
            # No live interpreter to ask: the recipe's keywords are the cheap answer.
            items = self.recipe.complete(code) if isinstance(code, str) else []
            self.send({"op": "completion", "req_id": req_id, "items": items})
            return
        previous = self._completions.pop(req_id, None)
        if previous is not None:
            previous.cancel()
        self._completions[req_id] = self.loop.call_later(
            COMPLETION_TIMEOUT, lambda: self._completed(req_id, [])
        )
        self.python_child().complete(req_id, code)

    def _completed(self, req_id: str, items: list[str]) -> None:
        timer = self._completions.pop(req_id, None)
        if timer is None:
            return  # answered already, or timed out
        timer.cancel()
        self.send({"op": "completion", "req_id": req_id, "items": items})

    # -- the Python child ---------------------------------------------------------------------

    def python_child(self) -> PythonChild:
        """The live interpreter, started if there is none (first use, or after a crash)."""
        if self._child is None or not self._child.alive:
            self._child = PythonChild(
                self.loop,
                self.flow,
                self.reaper,
                command=CHILD_COMMANDS.get(self.recipe.query),
                workdir=self.workdir,
                on_completion=self._completed,
                on_exit=self._on_child_exit,
            )
        return self._child

    def _on_child_exit(self, child: PythonChild) -> None:
        if self._child is child:
            self._child = None
        # Its pending completions will never be answered.
        for req_id in list(self._completions):
            self._completed(req_id, [])


def _finished(run_id: str, exit_code: int) -> dict[str, Any]:
    return {"op": "finished", "run_id": run_id, "exit_code": exit_code}
