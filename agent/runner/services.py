"""The kernel's apps (spec 9 service ports), started on demand: ``start_service``.

The agent asks ``{"op": "start_service", "req_id", "name", "port", "timeout"}`` when a
tunnel to the app is opened (spec 5.5); the runner answers ``{"op": "service",
"req_id", "name", "ok", "port", "started", "message"}`` once the app accepts TCP
connections on ``127.0.0.1:port`` (``ok`` true; at once, starting nothing, for an app
the image declares but the recipe has no start command for: the user's own), or when it
cannot: its process exited (``message`` holds the end of its output), or it did not
accept within ``timeout`` seconds (the process is then killed, so the next request starts
it afresh).

One process per service: a request while it starts waits for the same start; a request
while it runs is answered at once (after checking that the port still accepts); a
request after it died (crashed, killed by user code) starts it again. The process runs
as the runner does (the kernel user, in the container, under its limits), in its own
session, with stdin on /dev/null; its output goes to a log in its private state
directory under /tmp. Its whole process tree is spared by the sweeps that end each run
(`Reaper.keep_tree`) and killed when the runner stops.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import time
from typing import Any

from .context import RunnerContext
from .languages.schema import Recipe, Service
from .loop import Timer
from .reaper import descendants, scan_processes

#: Where each service's private files (its log, what `Service.env` names ``{state}``) go.
STATE_ROOT = "/tmp/.crucible-services"
#: How often a starting service's port is tried.
POLL_EVERY = 0.05
#: The bounds of a request's ``timeout``.
MIN_TIMEOUT = 0.1
MAX_TIMEOUT = 600.0
#: How much of a failed service's output its error message quotes.
LOG_TAIL_BYTES = 2000


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on `host`:`port` (loopback: a refused
    connect answers at once, so this does not stall the loop)."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class _Process:
    """One service's process and the requests waiting for it to accept."""

    def __init__(self, service: Service, popen: subprocess.Popen[bytes], log_path: str) -> None:
        self.service = service
        self.popen = popen
        self.log_path = log_path
        self.waiters: list[str] = []
        self.deadline = 0.0
        self.timer: Timer | None = None

    @property
    def starting(self) -> bool:
        return bool(self.waiters)


@dataclasses.dataclass(eq=False)
class ServiceStarter:
    """The services of one kernel (`recipe`'s), answering through the context's `send`."""

    ctx: RunnerContext
    recipe: Recipe
    state_root: str = STATE_ROOT
    _running: dict[str, _Process] = dataclasses.field(default_factory=dict, init=False)

    # -- requests ---------------------------------------------------------------------------

    def request(self, message: dict[str, Any]) -> None:
        req_id = str(message.get("req_id"))
        name = message.get("name")
        port = message.get("port")
        timeout = message.get("timeout")
        if not isinstance(name, str):
            self._answer(req_id, str(name), False, "start_service needs a service name")
            return
        service = self.recipe.service(name)
        if service is None:
            # The image declares the port (the agent checked its label) but the recipe
            # has no start command: an image of the user's own whose app the user (or the
            # image) starts. The tunnel's connection tells whether it listens.
            self._answer(req_id, name, True, "not started by the runner", started=False)
            return
        if service.protocol == "pty":
            message_ = f"service {name!r} is a terminal (pty): open it with the pty stream"
            self._answer(req_id, name, False, message_)
            return
        if port != service.port:
            # The image's label and the runner's recipe disagree: a stale image.
            self._answer(
                req_id, name, False, f"service {name!r} listens on {service.port}, not {port!r}"
            )
            return
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            timeout = 30.0
        timeout = min(max(float(timeout), MIN_TIMEOUT), MAX_TIMEOUT)
        process = self._running.get(name)
        if process is not None and process.popen.poll() is not None:
            self._ended(process)  # crashed or killed since: start it again
            process = None
        if process is None:
            try:
                process = self._spawn(service)
            except OSError as exc:
                self._answer(req_id, name, False, f"cannot start service {name!r}: {exc}")
                return
            started = True
        else:
            started = False
            if not process.starting and port_accepts(service.port):
                self._answer(req_id, name, True, "running", started=False)
                return
        process.waiters.append(req_id)
        process.deadline = max(process.deadline, time.monotonic() + timeout)
        if process.timer is None:
            self._poll(process, started)

    def collect(self) -> None:
        """Notice services whose process exited (after a SIGCHLD), so that no zombie
        stays and a start in progress fails at once."""
        for process in list(self._running.values()):
            if process.popen.poll() is not None and not process.starting:
                self._ended(process)

    def stop_all(self) -> None:
        """The runner stops: every service's process tree is killed."""
        for process in list(self._running.values()):
            self._kill(process)

    # -- starting ---------------------------------------------------------------------------

    def _spawn(self, service: Service) -> _Process:
        state = os.path.join(self.state_root, service.name)
        os.makedirs(state, mode=0o700, exist_ok=True)
        env = dict(os.environ)
        env.update((key, value.format(state=state)) for key, value in service.env)
        log_path = os.path.join(state, "log")
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                service.argv(self.ctx.workdir),
                cwd=self.ctx.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self.ctx.reaper.own(popen.pid)
        self.ctx.reaper.keep_tree(popen.pid)
        process = _Process(service, popen, log_path)
        self._running[service.name] = process
        return process

    def _poll(self, process: _Process, started: bool) -> None:
        process.timer = None
        name, port = process.service.name, process.service.port
        if self._running.get(name) is not process:
            return
        exit_code = process.popen.poll()
        if exit_code is not None:
            self._ended(process)
            why = f"service {name!r} exited with status {exit_code} before accepting on {port}"
            self._fail_waiters(process, f"{why}; its output ends with:\n{self._log_tail(process)}")
            return
        if port_accepts(port):
            waiters, process.waiters, process.deadline = process.waiters, [], 0.0
            for req_id in waiters:
                self._answer(req_id, name, True, "started" if started else "running", started)
            return
        if time.monotonic() >= process.deadline:
            self._kill(process)
            why = f"service {name!r} did not accept connections on port {port} in time"
            self._fail_waiters(process, f"{why}; its output ends with:\n{self._log_tail(process)}")
            return
        process.timer = self.ctx.loop.call_later(POLL_EVERY, lambda: self._poll(process, started))

    def _fail_waiters(self, process: _Process, message: str) -> None:
        waiters, process.waiters = process.waiters, []
        for req_id in waiters:
            self._answer(req_id, process.service.name, False, message)

    # -- ending -----------------------------------------------------------------------------

    def _kill(self, process: _Process) -> None:
        """SIGKILL the service's whole tree (its session may have forked more)."""
        if process.timer is not None:
            process.timer.cancel()
            process.timer = None
        pid = process.popen.pid
        table = scan_processes()
        for target in (pid, *descendants(table, pid)):
            try:
                os.kill(target, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            process.popen.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            pass
        self._ended(process)

    def _ended(self, process: _Process) -> None:
        pid = process.popen.pid
        if process.popen.returncode is not None:
            self.ctx.reaper.disown(pid)
        self.ctx.reaper.release(pid)
        if self._running.get(process.service.name) is process:
            del self._running[process.service.name]

    def _log_tail(self, process: _Process) -> str:
        try:
            with open(process.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                size = log.tell()
                log.seek(max(0, size - LOG_TAIL_BYTES))
                return log.read().decode("utf-8", "replace").strip() or "(nothing)"
        except OSError:
            return "(no output)"

    def _answer(
        self, req_id: str, name: str, ok: bool, message: str, started: bool = False
    ) -> None:
        service = self.recipe.service(name)
        self.ctx.send(
            {
                "op": "service",
                "req_id": req_id,
                "name": name,
                "ok": ok,
                "started": started and ok,
                "port": service.port if service is not None else None,
                "message": message,
            }
        )
