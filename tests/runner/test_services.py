"""The runner's ``start_service`` (spec 9 service ports): started on demand, answered
once the port accepts, one start at a time, a bounded wait, a restart after a crash.

Real processes on loopback; the declared ports are free ones found by binding port 0.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crucible.agent.runner.context import RunnerContext
from crucible.agent.runner.languages.schema import Recipe, Service
from crucible.agent.runner.loop import Loop
from crucible.agent.runner.reaper import Reaper, descendants, scan_processes
from crucible.agent.runner.services import ServiceStarter, port_accepts

DEADLINE = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Harness:
    """A `ServiceStarter` on its own loop, collecting its answers."""

    def __init__(self, recipe: Recipe, workdir: Path, state: Path) -> None:
        self.loop = Loop()
        self.answers: list[dict[str, Any]] = []
        self.reaper = Reaper()
        # This process is pytest, not a runner: a sweep here would SIGKILL every child it
        # already has (a session fixture's `crucible up`, whose exit status it would then
        # reap, so its Popen reads 0). Those are not a run's leftovers: spare them.
        for pid in descendants(scan_processes(), os.getpid()):
            self.reaper.keep_tree(pid)
        context = RunnerContext(self.loop, self.reaper, str(workdir), self.answers.append)
        self.starter = ServiceStarter(context, recipe, state_root=str(state))
        self.recipe = recipe

    def ask(self, name: str, *, timeout: float = 10.0, req_id: str = "r") -> None:
        service = self.recipe.service(name)
        port = service.port if service is not None else 0
        self.starter.request(
            {
                "op": "start_service",
                "req_id": req_id,
                "name": name,
                "port": port,
                "timeout": timeout,
            }
        )

    def wait(self, count: int) -> list[dict[str, Any]]:
        """Run the loop until `count` answers arrived (or fail after `DEADLINE`)."""
        deadline = time.monotonic() + DEADLINE

        def check() -> None:
            if len(self.answers) >= count or time.monotonic() > deadline:
                self.loop.stop()
            else:
                self.loop.call_later(0.02, check)

        check()
        if len(self.answers) < count:
            self.loop._stopped = False
            self.loop.run()
        assert len(self.answers) >= count, f"only {self.answers} within {DEADLINE} s"
        return self.answers[:count]


@pytest.fixture
def ports() -> dict[str, int]:
    return {"web": free_port(), "crash": free_port(), "mute": free_port()}


@pytest.fixture
def harness(tmp_path: Path, ports: dict[str, int]) -> Iterator[Harness]:
    python = sys.executable
    recipe = Recipe(
        name="test",
        services=(
            Service(
                "web",
                "http",
                ports["web"],
                (python, "-m", "http.server", "{port}", "--bind", "127.0.0.1", "-d", "{workdir}"),
                env=(("WEB_STATE", "{state}"),),
            ),
            Service("crash", "tcp", ports["crash"], (python, "-c", "print('boom'); exit(3)")),
            Service("mute", "tcp", ports["mute"], (python, "-c", "import time; time.sleep(60)")),
            Service("term", "pty", 7681, ("bash",)),
        ),
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "hello.txt").write_text("hi from the workdir")
    h = Harness(recipe, workdir, tmp_path / "state")
    try:
        yield h
    finally:
        h.starter.stop_all()


def test_starts_the_service_and_answers_once_it_accepts(
    harness: Harness, ports: dict[str, int]
) -> None:
    assert not port_accepts(ports["web"])
    harness.ask("web")
    (answer,) = harness.wait(1)
    assert answer == {
        "op": "service",
        "req_id": "r",
        "name": "web",
        "ok": True,
        "started": True,
        "port": ports["web"],
        "message": "started",
    }
    url = f"http://127.0.0.1:{ports['web']}/hello.txt"
    with urllib.request.urlopen(url, timeout=5) as response:  # the workdir is its root
        assert response.read() == b"hi from the workdir"


def test_running_service_is_answered_at_once_and_not_started_twice(harness: Harness) -> None:
    harness.ask("web", req_id="a")
    harness.ask("web", req_id="b")  # while it starts: joins the same start
    first, second = harness.wait(2)
    assert {first["req_id"], second["req_id"]} == {"a", "b"}
    assert first["ok"] and second["ok"]
    pid = harness.starter._running["web"].popen.pid
    harness.ask("web", req_id="c")
    (third,) = harness.answers[2:]  # answered without running the loop
    assert third["ok"] and third["started"] is False and third["message"] == "running"
    assert harness.starter._running["web"].popen.pid == pid


def test_crash_is_reported_with_its_output_then_restarted_on_the_next_request(
    harness: Harness,
) -> None:
    harness.ask("crash")
    (answer,) = harness.wait(1)
    assert answer["ok"] is False
    assert "exited with status 3" in answer["message"] and "boom" in answer["message"]
    # A service that ran and was killed (crash, user code) starts again when asked.
    harness.ask("web", req_id="1")
    harness.wait(2)
    first_pid = harness.starter._running["web"].popen.pid
    os.kill(first_pid, signal.SIGKILL)
    harness.starter._running["web"].popen.wait(5)
    harness.ask("web", req_id="2")
    answer = harness.wait(3)[2]
    assert answer["ok"] and answer["started"] is True
    assert harness.starter._running["web"].popen.pid != first_pid


def test_a_service_that_never_accepts_fails_within_the_timeout_and_is_stopped(
    harness: Harness,
) -> None:
    started = time.monotonic()
    harness.ask("mute", timeout=1.0)
    (answer,) = harness.wait(1)
    elapsed = time.monotonic() - started
    assert answer["ok"] is False and "did not accept connections" in answer["message"]
    assert 0.9 < elapsed < 5.0
    assert "mute" not in harness.starter._running  # killed: the next request starts afresh


def test_an_app_the_recipe_does_not_start_is_left_to_the_user(harness: Harness) -> None:
    # Declared by the image's label (the agent checks that) but with no start command
    # here: the user's own image, whose app the user starts; the tunnel tells.
    harness.starter.request({"op": "start_service", "req_id": "x", "name": "own", "port": 1})
    (answer,) = harness.answers
    assert answer["ok"] is True and answer["started"] is False
    assert not harness.starter._running


@pytest.mark.parametrize(
    ("name", "why"), [("term", "terminal"), (None, "needs a service name")]
)
def test_requests_it_cannot_serve_are_refused(harness: Harness, name: Any, why: str) -> None:
    harness.starter.request({"op": "start_service", "req_id": "x", "name": name, "port": 1})
    (answer,) = harness.answers
    assert answer["ok"] is False and why in answer["message"]


def test_a_port_other_than_the_recipe_one_is_refused(harness: Harness) -> None:
    harness.starter.request({"op": "start_service", "req_id": "x", "name": "web", "port": 9})
    (answer,) = harness.answers
    assert answer["ok"] is False and "not 9" in answer["message"]
    assert not harness.starter._running


def test_the_service_tree_outlives_run_sweeps_but_not_stop_all(harness: Harness) -> None:
    harness.ask("web")
    harness.wait(1)
    pid = harness.starter._running["web"].popen.pid
    harness.reaper.sweep()  # what the end of every run does
    assert harness.starter._running["web"].popen.poll() is None
    harness.starter.stop_all()
    assert not harness.starter._running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
