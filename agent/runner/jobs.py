"""Runs: one query snippet or one batch job, from ``execute`` to ``finished``.

A run knows its runner only as a `RunHost`: what it needs (the loop, the process
tools, the recipe, a way to send messages and to say it finished), not the server.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any, Protocol

from .console import Console
from .flow import Flow
from .languages import Recipe
from .loop import Loop
from .procs import ShellStep
from .pyproc import PythonChild
from .reaper import Reaper


class RunHost(Protocol):
    """What a run needs from the runner that hosts it (`server.Runner` is one)."""

    loop: Loop
    flow: Flow
    reaper: Reaper
    #: Where user code runs (``/home/work``).
    workdir: str
    recipe: Recipe

    def send(self, message: dict[str, Any]) -> None:
        """Send a message to the agent (held while it is not connected)."""

    def end_of_run(self) -> None:
        """Before a run reports ``finished``: stop every process it started."""

    def job_finished(self, job: Job) -> None:
        """The run reported ``finished``; the next may start."""

    def python_child(self) -> PythonChild:
        """The persistent interpreter, started if it is not running."""


class RunProcess(Protocol):
    """What executes a run now: a shell step, or the persistent interpreter."""

    def feed(self, text: str) -> bool:
        """Deliver input; False when the process is not waiting for any."""

    def interrupt(self) -> None: ...

    def kill(self) -> None: ...


class Job:
    """The base of every run: console batching, the waiting-input and finished messages,
    and passing input and interrupts on to the process that executes it now."""

    def __init__(self, runner: RunHost, run_id: str, mode: str) -> None:
        self.runner = runner
        self.run_id = run_id
        #: ``query`` or ``batch``, as the agent asked; reported in ``hello``.
        self.mode = mode
        self.started_at = time.monotonic()
        self.console = Console(runner.loop, run_id, runner.send)
        self.waiting_password: bool | None = None
        self.done = False
        #: What executes the run now; None before it starts and between steps.
        self.process: RunProcess | None = None

    def start(self) -> None:
        raise NotImplementedError

    def feed(self, text: str) -> bool:
        """Deliver an ``input`` message; False if the run cannot take one now."""
        if self.process is None or not self.process.feed(text):
            return False
        self.waiting_password = None
        return True

    def interrupt(self) -> None:
        if self.process is not None:
            self.process.interrupt()

    def kill(self) -> None:
        """The runner is shutting down."""

    def cancel(self) -> None:
        """End the run now, for good: kill its processes; ``finished`` follows."""
        raise NotImplementedError

    def output(self, kind: str, data: Any) -> None:
        if not self.done:
            self.console.add(kind, data)

    def waiting_input(self, is_password: bool) -> None:
        self.console.flush()
        self.waiting_password = is_password
        self.runner.send(self.waiting_message())

    def waiting_message(self) -> dict[str, Any]:
        return {
            "op": "waiting-input",
            "run_id": self.run_id,
            "is_password": bool(self.waiting_password),
        }

    def step_finished(self, step: str, exit_code: int) -> None:
        self.console.flush()
        self.runner.send(
            {"op": "step-finished", "run_id": self.run_id, "step": step, "exit_code": exit_code}
        )

    def finish(self, exit_code: int) -> None:
        if self.done:
            return
        self.console.flush()
        self.done = True
        self.waiting_password = None
        self.runner.end_of_run()
        self.runner.send({"op": "finished", "run_id": self.run_id, "exit_code": exit_code})
        self.runner.job_finished(self)


class PythonQueryJob(Job):
    """A snippet run in the persistent Python child (exit code 0 unless the child dies)."""

    def __init__(self, runner: RunHost, run_id: str, code: str) -> None:
        super().__init__(runner, run_id, "query")
        self.code = code

    def start(self) -> None:
        child = self.runner.python_child()
        self.process = child
        child.execute(self, self.code)

    def cancel(self) -> None:
        # The interpreter is the run: it goes (and the session's state with it); the
        # child's exit finishes the run, and the next run starts a fresh interpreter.
        if self.process is not None:
            self.process.kill()

    def child_done(self, exit_code: int) -> None:
        self.finish(exit_code)


class StepsJob(Job):
    """Shell steps one after the other: a batch job, or a compile-and-run snippet.

    `steps` are (name, command) pairs; a named step (``clean``, ``build``) reports
    ``step-finished`` (when `report_steps`) even when its command is ``None`` (skipped,
    exit code 0). A failed ``build`` skips the rest; the run finishes with
    `build_failure_code` (127 for batch runs, per the spec) or, when that is ``None``,
    with the build's own exit code.
    """

    def __init__(
        self,
        runner: RunHost,
        run_id: str,
        steps: list[tuple[str | None, str | None]],
        *,
        mode: str,
        report_steps: bool,
        build_failure_code: int | None,
        scratch: str | None = None,
        pre_message: str | None = None,
    ) -> None:
        super().__init__(runner, run_id, mode)
        self._steps = list(steps)
        self._report_steps = report_steps
        self._build_failure_code = build_failure_code
        self._scratch = scratch
        self._pre_message = pre_message
        self._current_name: str | None = None
        self._last_code = 0

    def start(self) -> None:
        if self._pre_message:
            self.output("stderr", self._pre_message)
        self._next()

    def _next(self) -> None:
        if self.done:
            return
        if not self._steps:
            self._end(self._last_code)
            return
        name, command = self._steps.pop(0)
        self._current_name = name
        if command is None:
            self._step_done(0, ran=False)
            return
        step = ShellStep(
            self.runner.loop,
            self.runner.flow,
            self.runner.reaper,
            command,
            workdir=self.runner.workdir,
            output=self.output,
            on_exit=self._step_done,
            on_waiting=lambda: self.waiting_input(False),
            # Named steps (clean, build) prepare; only the program itself talks to the user.
            interactive=name is None,
        )
        self.process = step
        step.start()

    def _step_done(self, exit_code: int, ran: bool = True) -> None:
        self.process = None
        self.waiting_password = None
        name = self._current_name
        if ran:
            self._last_code = exit_code
        if name is not None and self._report_steps:
            self.step_finished(name, exit_code)
        if name == "build" and exit_code != 0:
            failure = self._build_failure_code
            self._end(exit_code if failure is None else failure)
            return
        self._next()

    def _end(self, exit_code: int) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
        self.finish(exit_code)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def cancel(self) -> None:
        # No further step; the current one's exit (it is killed) ends the run.
        self._steps.clear()
        self._build_failure_code = None
        if self.process is not None:
            self.process.kill()


def batch_job(runner: RunHost, run_id: str, options: dict[str, Any]) -> Job:
    """A batch run: clean, build, exec with the recipe's defaults for ``"*"``."""
    recipe = runner.recipe
    steps: list[tuple[str | None, str | None]] = []
    note = None
    for step in ("clean", "build", "exec"):
        command = recipe.batch_command(step, options.get(step), runner.workdir)
        if step == "exec" and command is None and options.get("exec") == "*":
            note = f"[runner] no default command to run for {recipe.name!r} in this folder\n"
            command = "exit 127"
        steps.append((step if step != "exec" else None, command))
    return StepsJob(
        runner,
        run_id,
        steps,
        mode="batch",
        report_steps=True,
        build_failure_code=127,
        pre_message=note,
    )


def compile_and_run_job(runner: RunHost, run_id: str, code: str) -> Job:
    """A query snippet for a compiled language: scratch file, build, run; no state."""
    recipe = runner.recipe
    # Under the working directory, not /tmp: container tmpfs mounts are usually noexec.
    scratch = tempfile.mkdtemp(prefix=".crucible-query-", dir=runner.workdir)
    with open(os.path.join(scratch, recipe.snippet_file), "w", encoding="utf-8") as f:
        f.write(recipe.snippet(code))
    build, run = recipe.query_commands(scratch)
    return StepsJob(
        runner,
        run_id,
        [("build", build), (None, run)],
        mode="query",
        report_steps=False,
        build_failure_code=None,
        scratch=scratch,
    )
