"""The runner's server: the agent socket, the message handlers and the run queue."""

from __future__ import annotations

import argparse
import collections
import os
import signal
import socket
import sys
import traceback
from typing import Any

from . import framing
from .channel import FramedSocket
from .flow import Flow
from .jobs import Job, PythonQueryJob, batch_job, compile_and_run_job
from .loop import Loop, Timer
from .pyproc import PythonChild
from .recipes import Recipe, get_recipe

PROTOCOL = 1
#: Unsent bytes to the agent above which output sources stop being read, and below
#: which they resume.
HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024
#: Runs the agent may queue behind the current one (it serialises runs itself).
MAX_QUEUED = 64
COMPLETION_TIMEOUT = 3.0
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
    """One kernel's runner: serves one agent connection at a time, runs one run at a time."""

    def __init__(self, recipe: Recipe, socket_path: str, workdir: str) -> None:
        self.recipe = recipe
        self.socket_path = socket_path
        self.workdir = workdir
        self.loop = Loop()
        self.flow = Flow()
        self.conn: FramedSocket | None = None
        self.job: Job | None = None
        self.queue: collections.deque[dict[str, Any]] = collections.deque()
        self._child: PythonChild | None = None
        self._completions: dict[str, Timer] = {}
        self._listener: socket.socket | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def listen(self) -> None:
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Bind under a temporary name and rename once listening: whoever sees the socket
        # file can connect at once.
        staging = f"{self.socket_path}.{os.getpid()}"
        try:
            os.unlink(staging)
        except FileNotFoundError:
            pass
        listener.bind(staging)
        # The agent may run as another uid on the host; the per-kernel ipc directory,
        # mounted into this container only, is what keeps others out.
        os.chmod(staging, 0o666)
        listener.listen(8)
        os.rename(staging, self.socket_path)
        listener.setblocking(False)
        self.loop.add_reader(listener.fileno(), self._accept)
        self._listener = listener

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT; then stop every process started for the user."""
        self.listen()
        if self.recipe.query in PERSISTENT_QUERIES:
            # Start the interpreter now so that the first run does not pay for it.
            self.python_child()
        try:
            self.loop.run()
        finally:
            self.close()

    def close(self) -> None:
        if self.job is not None:
            self.job.kill()
        if self._child is not None:
            self._child.kill()
        if self._listener is not None:
            self._listener.close()
            try:
                os.unlink(self.socket_path)
            except OSError:
                pass

    # -- the agent connection ---------------------------------------------------------------

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            sock, _ = self._listener.accept()
        except OSError:
            return
        if self.conn is not None:
            # A new connection means the agent restarted; the old one is stale.
            self.conn.close()
        self.conn = FramedSocket(
            self.loop,
            sock,
            max_frame=framing.MAX_FRAME_BYTES,
            on_message=self._on_message,
            on_close=lambda: self._on_conn_closed(conn),
            on_sent=self._on_sent,
        )
        conn = self.conn
        conn.send({"op": "hello", "lang": self.recipe.name, "protocol": PROTOCOL})
        if self.job is not None and self.job.waiting_password is not None:
            # The new agent cannot know that the current run waits for input.
            conn.send(self.job.waiting_message())

    def _on_conn_closed(self, conn: FramedSocket) -> None:
        if self.conn is conn:
            self.conn = None
            # Nobody to send to: output is dropped rather than held.
            self.flow.set_paused(False)

    def _on_sent(self) -> None:
        if self.flow.paused and (self.conn is None or self.conn.unsent < LOW_WATER):
            self.flow.set_paused(False)

    def send(self, message: dict[str, Any]) -> None:
        """Send to the current agent connection, if any (else the message is dropped)."""
        conn = self.conn
        if conn is None:
            return
        data_size = conn.unsent
        try:
            conn.send(message)
        except ValueError:
            # Not JSON-serialisable (should not happen): report instead of dying.
            conn.send({"op": "error", "message": "runner produced an unserialisable message"})
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
        elif op == "ping":
            self.send({"op": "pong", "req_id": message.get("req_id")})
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
            self.send({"op": "finished", "run_id": run_id, "exit_code": -1})
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
        while self.job is None and self.queue:
            message = self.queue.popleft()
            run_id = message["run_id"]
            try:
                job = self._make_job(message)
            except Exception as exc:
                log(f"cannot start run {run_id}:\n{traceback.format_exc()}")
                self.error(f"cannot start run: {exc}", run_id=run_id)
                self.send({"op": "finished", "run_id": run_id, "exit_code": -1})
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

    def job_finished(self, job: Job) -> None:
        if self.job is job:
            self.job = None
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


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="crucible-runner", description=__doc__)
    parser.add_argument("--lang", required=True, help="recipe name (image label crucible.lang)")
    parser.add_argument("--socket", required=True, help="unix socket path to listen on")
    parser.add_argument(
        "--workdir", default="/home/work", help="where user code runs (default /home/work)"
    )
    return parser.parse_args(argv)


def serve(argv: list[str]) -> int:
    """Run the runner until it is told to stop."""
    args = parse_args(argv)
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)
    recipe = get_recipe(args.lang)
    if recipe.query == "none":
        log(f"language {args.lang!r}: batch mode only (no query recipe)")

    def _stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    runner = Runner(recipe, os.path.abspath(args.socket), workdir)
    try:
        runner.run()
    except (SystemExit, KeyboardInterrupt):
        pass
    return 0
