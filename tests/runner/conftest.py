"""Fixtures: the kernel runner as a local subprocess, and a blocking test client.

The runner is started exactly as in a container (``python3 main.py --lang ...
--socket ...``) with a temporary folder standing in for /home/work; the test listens
on the socket the runner dials, as the agent does. Every wait has a
deadline so a broken runner fails a test instead of hanging it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import crucible.agent.runner
from crucible.agent.runner import framing

RUNNER_MAIN = Path(crucible.agent.runner.__file__).parent / "main.py"
#: The interpreter playing the image's python3 (e.g. one with matplotlib installed).
RUNNER_PYTHON = os.environ.get("CRUCIBLE_RUNNER_PYTHON", sys.executable)
DEFAULT_TIMEOUT = 20.0


class RunnerClient:
    """A connection to the runner that plays the agent's part."""

    def __init__(self, sock: socket.socket, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.sock = sock
        self.sock.settimeout(timeout)
        self._decoder = framing.FrameDecoder()
        self._inbox: list[dict[str, Any]] = []
        self._run_seq = 0

    def close(self) -> None:
        self.sock.close()

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(framing.encode(message))

    def recv(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not self._inbox:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no message from the runner")
            self.sock.settimeout(remaining)
            data = self.sock.recv(1024 * 1024)
            if not data:
                raise ConnectionError("runner closed the connection")
            for message in self._decoder.feed(data):
                assert not isinstance(message, framing.FrameError), message
                self._inbox.append(message)
        return self._inbox.pop(0)

    def recv_op(self, op: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """The next message with `op`, skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(max(deadline - time.monotonic(), 0.001))
            if message["op"] == op:
                return message

    def new_run_id(self) -> str:
        self._run_seq += 1
        return f"run-{self._run_seq}"

    def execute(
        self,
        code: str = "",
        *,
        mode: str = "query",
        options: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> str:
        run_id = run_id or self.new_run_id()
        self.send(
            {"op": "execute", "run_id": run_id, "mode": mode, "code": code, "options": options}
        )
        return run_id

    def collect(
        self,
        run_id: str,
        *,
        inputs: list[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        on_message: Callable[[dict[str, Any]], None] | None = None,
    ) -> Result:
        """Messages of `run_id` until ``finished``, answering ``waiting-input``."""
        result = Result()
        pending = list(inputs or [])
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(max(deadline - time.monotonic(), 0.001))
            if on_message is not None:
                on_message(message)
            if message.get("run_id") != run_id:
                continue
            result.messages.append(message)
            if message["op"] == "waiting-input":
                result.prompts.append(message["is_password"])
                assert pending, f"unexpected waiting-input; output so far: {result.console}"
                self.send({"op": "input", "run_id": run_id, "text": pending.pop(0)})
            elif message["op"] == "finished":
                result.exit_code = message["exit_code"]
                return result

    def run(self, code: str = "", **kwargs: Any) -> Result:
        mode = kwargs.pop("mode", "query")
        options = kwargs.pop("options", None)
        return self.collect(self.execute(code, mode=mode, options=options), **kwargs)


class Result:
    """The messages of one run, with views on them."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.prompts: list[bool] = []
        self.exit_code: int | None = None

    @property
    def console(self) -> list[list[Any]]:
        items: list[list[Any]] = []
        for message in self.messages:
            if message["op"] == "console":
                for kind, data in message["items"]:
                    # Merge like the spec's consumer would: chunk borders mean nothing.
                    if items and kind in ("stdout", "stderr") and items[-1][0] == kind:
                        items[-1][1].append(data)
                    else:
                        items.append([kind, [data] if kind in ("stdout", "stderr") else data])
        return [[k, "".join(d) if k in ("stdout", "stderr") else d] for k, d in items]

    def text(self, stream: str) -> str:
        return "".join(data for kind, data in self.console if kind == stream)

    @property
    def stdout(self) -> str:
        return self.text("stdout")

    @property
    def stderr(self) -> str:
        return self.text("stderr")

    @property
    def ops(self) -> list[str]:
        return [m["op"] for m in self.messages if m["op"] != "console"]


class RunnerProcess:
    """A runner and the listening socket it dials, as the agent holds it."""

    def __init__(self, lang: str, base: Path) -> None:
        self.workdir = base / "work"
        self.workdir.mkdir()
        self.socket_path = str(base / "agent.sock")
        self.listen()
        self.proc = subprocess.Popen(
            [
                *(RUNNER_PYTHON, str(RUNNER_MAIN), "--lang", lang),
                *("--socket", self.socket_path, "--workdir", str(self.workdir)),
            ],
        )
        self.clients: list[RunnerClient] = []
        self.last_hello: dict[str, Any] = {}

    def listen(self) -> None:
        """Open the socket the runner dials (a new agent starting)."""
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.socket_path)
        self.listener.listen(8)

    def agent_gone(self) -> None:
        """The agent dies: its connections and its socket go."""
        for client in self.clients:
            client.close()
        self.listener.close()
        os.unlink(self.socket_path)

    def accept(self, timeout: float = DEFAULT_TIMEOUT) -> RunnerClient:
        """The runner's next connection (it dials on start and after every drop)."""
        self.listener.settimeout(timeout)
        try:
            sock, _ = self.listener.accept()
        except TimeoutError:
            raise AssertionError(
                f"no dial from the runner (exit code {self.proc.poll()})"
            ) from None
        client = RunnerClient(sock)
        self.clients.append(client)
        hello = client.recv()
        assert hello["op"] == "hello", hello
        self.last_hello = hello
        return client

    def connect(self) -> RunnerClient:
        return self.accept()

    def replace_agent(self, gone_for: float, timeout: float = DEFAULT_TIMEOUT) -> RunnerClient:
        """The agent dies, and a new one listens `gone_for` seconds later: the runner's
        connection to it (its hello in `last_hello`)."""
        self.agent_gone()
        time.sleep(gone_for)
        self.listen()
        return self.accept(timeout)

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.listener.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start_runner() -> Iterator[Callable[[str], RunnerProcess]]:
    """Start runners for a language; all are stopped and cleaned up after the test."""
    # A short base path: unix socket paths are limited to ~107 bytes.
    base = Path(tempfile.mkdtemp(prefix="crr-"))
    started: list[RunnerProcess] = []

    def start(lang: str) -> RunnerProcess:
        home = base / str(len(started))
        home.mkdir()
        runner = RunnerProcess(lang, home)
        started.append(runner)
        return runner

    try:
        yield start
    finally:
        for runner in started:
            runner.stop()
        shutil.rmtree(base, ignore_errors=True)


def runner_python_has(module: str) -> bool:
    """Whether the runner's interpreter can import `module`."""
    probe = subprocess.run([RUNNER_PYTHON, "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


@pytest.fixture
def python_runner(start_runner: Callable[[str], RunnerProcess]) -> RunnerProcess:
    return start_runner("python")


@pytest.fixture
def py(python_runner: RunnerProcess) -> RunnerClient:
    return python_runner.connect()


@pytest.fixture
def c_runner(start_runner: Callable[[str], RunnerProcess]) -> RunnerProcess:
    return start_runner("c")
