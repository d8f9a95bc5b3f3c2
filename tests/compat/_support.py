"""Helpers of the compatibility suite: one live `crucible up` and the reference client.

The server is a real ``crucible up`` subprocess (port 0, a temporary state directory with
its own embedded PostgreSQL), started once per test session: starting it costs seconds
(``initdb``), and the suite only ever reads through it. The reference client, the
official Backend.AI client SDK 18.12.3, lives in its own virtualenv
(``.venv-reference-client``, made by ``scripts/bootstrap``) because it pins an old
aiohttp; tests drive it as subprocesses, never by importing it here.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Where scripts/bootstrap installs the reference client; overridable for odd layouts.
REFERENCE_VENV = Path(
    os.environ.get("CRUCIBLE_REFERENCE_CLIENT_VENV", REPO_ROOT / ".venv-reference-client")
)
PROBE_SCRIPT = Path(__file__).with_name("reference_probe.py")

#: `crucible up` runs initdb on first start; a slow CI machine needs a while for that.
STARTUP_TIMEOUT = 120.0
#: What a graceful stop may take: ending live sessions, shutdown_timeout, stopping PostgreSQL.
STOP_TIMEOUT = 40.0  # sessions still running are ended first
#: One reference-client invocation: Python start-up, aiohttp import, one request.
CLIENT_TIMEOUT = 60.0
ANNOUNCED = ("BACKEND_ENDPOINT", "BACKEND_ACCESS_KEY", "BACKEND_SECRET_KEY")


@dataclass(frozen=True)
class RunningCrucible:
    """A live ``crucible up`` and the admin keypair it announced."""

    endpoint: str
    access_key: str
    secret_key: str
    state_dir: Path
    log_path: Path
    #: The `crucible up` process itself.
    process: subprocess.Popen[str] = field(compare=False, repr=False)


@dataclass(frozen=True)
class ClientResult:
    """What one reference-client subprocess did."""

    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The probe's report: the last stdout line, as JSON."""
        lines = self.stdout.strip().splitlines()
        assert lines, f"the probe printed nothing; stderr:\n{self.stderr}"
        return json.loads(lines[-1])


def find_crucible() -> str:
    """The dev venv's `crucible`: next to the Python running the tests, else on PATH."""
    beside = Path(sys.executable).with_name("crucible")
    if beside.exists():
        return str(beside)
    found = shutil.which("crucible")
    if found is None:
        pytest.fail("no `crucible` command: run scripts/bootstrap (or pip install -e .)")
    return found


def read_lines(stream: Any, sink: queue.Queue[str | None]) -> None:
    # A thread, because a pipe read has no timeout of its own; the main thread waits on
    # the queue with one. It drains stdout to EOF so the server can never block on it.
    for line in stream:
        sink.put(line)
    sink.put(None)


def postmaster_pid(state_dir: Path) -> int | None:
    try:
        first_line = (state_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return int(first_line) if first_line.strip().isdigit() else None


def _process_alive(pid: int) -> bool:
    # /proc rather than kill(pid, 0): a postmaster whose parent is gone may linger as a
    # zombie when PID 1 does not reap (containers), and a zombie is stopped for our needs.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def stop_orphaned_postgres(state_dir: Path) -> None:
    """Fast-stop (SIGINT) a postmaster that a killed `crucible up` left behind."""
    pid = postmaster_pid(state_dir)
    if pid is not None and _process_alive(pid):
        os.kill(pid, signal.SIGINT)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_for_announcement(
    proc: subprocess.Popen[str], lines: queue.Queue[str | None], log_path: Path
) -> dict[str, str]:
    announced: dict[str, str] = {}
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while len(announced) < len(ANNOUNCED):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(
                f"crucible up announced nothing in {STARTUP_TIMEOUT:.0f}s; log:\n" + _tail(log_path)
            )
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:
            proc.wait(timeout=STOP_TIMEOUT)
            pytest.fail(
                f"crucible up exited ({proc.returncode}) before announcing its keys; "
                f"log:\n{_tail(log_path)}"
            )
        key, sep, value = line.strip().partition("=")
        if sep and key in ANNOUNCED:
            announced[key] = value
    return announced


@contextlib.contextmanager
def scratch_state(prefix: str) -> Iterator[tuple[Path, Path]]:
    """A fresh state directory and log path for a `crucible up` of one's own.

    Not under pytest's basetemp: another pytest run of the same user may prune that while
    the embedded PostgreSQL (running as its own user) still needs it; kernel runner
    sockets also want a short path. Afterwards, any PostgreSQL left there is stopped.
    """
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield base / "state", base / "crucible.log"
    finally:
        stop_orphaned_postgres(base / "state")
        shutil.rmtree(base, ignore_errors=True)


def kill_if_running(proc: subprocess.Popen[str] | None) -> None:
    """After a failed test: never leave a server running."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


def start_crucible_up(
    state_dir: Path,
    log_path: Path,
    *extra_args: str,
    command: Sequence[str] = (),
    cwd: Path | None = None,
) -> RunningCrucible:
    """`crucible up --bind 127.0.0.1:0` on `state_dir`, once it has announced its keys.

    `command` replaces the `crucible` program (e.g. a Python wrapper that injects a
    fault); `cwd` is the directory it starts in (a relative `state_dir` is taken from
    there). Its stderr goes to `log_path`; stdout is drained by a thread so it never
    blocks.
    """
    argv = [*(command or [find_crucible()]), "up", "--bind", "127.0.0.1:0"]
    argv += ["--state-dir", str(state_dir), *extra_args]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True, cwd=cwd
        )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=read_lines, args=(proc.stdout, lines), daemon=True).start()
    try:
        announced = wait_for_announcement(proc, lines, log_path)
    except BaseException:
        kill_if_running(proc)
        raise
    return RunningCrucible(
        endpoint=announced["BACKEND_ENDPOINT"],
        access_key=announced["BACKEND_ACCESS_KEY"],
        secret_key=announced["BACKEND_SECRET_KEY"],
        state_dir=(cwd or Path.cwd()) / state_dir,
        log_path=log_path,
        process=proc,
    )


@contextlib.contextmanager
def running_crucible_up(
    state_dir: Path,
    log_path: Path,
    *extra_args: str,
    command: Sequence[str] = (),
    cwd: Path | None = None,
) -> Iterator[RunningCrucible]:
    """`start_crucible_up` for the block; killed at its end if it still runs (a test
    that stops it checks the stop itself, `stop_and_check`)."""
    server = start_crucible_up(state_dir, log_path, *extra_args, command=command, cwd=cwd)
    try:
        yield server
    finally:
        kill_if_running(server.process)


def stop_and_check(proc: subprocess.Popen[str], state_dir: Path, log_path: Path) -> None:
    postmaster = postmaster_pid(state_dir)
    assert postmaster is not None, "the embedded PostgreSQL left no postmaster.pid"
    # Whether crucible was still running when asked to stop (a failure below says).
    before = proc.poll()
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"crucible up did not stop within {STOP_TIMEOUT:.0f}s of SIGINT; log:\n"
            + _tail(log_path)
        )
    assert code == 0, f"crucible up exited with {code} after SIGINT; log:\n{_tail(log_path)}"
    # `pg_ctl stop -w` has returned by the time crucible exits; a short grace covers the
    # last moments of a postmaster's exit.
    deadline = time.monotonic() + 2.0
    while _process_alive(postmaster) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _process_alive(postmaster), (
        f"PostgreSQL (pid {postmaster}) outlived crucible (which had "
        f"{'already exited with ' + str(before) if before is not None else 'run until SIGINT'});"
        f" log:\n{_tail(log_path)}"
    )
    assert postmaster_pid(state_dir) is None, "postmaster.pid is still there: unclean stop"


@contextlib.contextmanager
def launched_crucible(
    *, command: Sequence[str] = (), config_text: str = ""
) -> Iterator[RunningCrucible]:
    """`crucible up --bind 127.0.0.1:0` in a fresh state directory, stopped with SIGINT.

    `command` as for `start_crucible_up`; `config_text` is written to a ``--config``
    file. Leaving the block asserts the graceful stop contract: exit code 0 within
    STOP_TIMEOUT, and the embedded PostgreSQL it started is gone.
    """
    with scratch_state("crucible-compat-") as (state_dir, log_path):
        extra: list[str] = []
        if config_text:
            config_path = state_dir.parent / "crucible.toml"
            config_path.write_text(config_text)
            extra = ["--config", str(config_path)]
        with running_crucible_up(state_dir, log_path, *extra, command=command) as server:
            yield server
            stop_and_check(server.process, state_dir, log_path)


def reference_client_env(server: RunningCrucible, **overrides: str) -> dict[str, str]:
    """This process's environment with the client's variables pointing at `server`.

    Inherited ``BACKEND_*``/``SORNA_*`` variables are dropped so that a developer's own
    client settings can never leak into a test.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
    env.update(
        BACKEND_ENDPOINT=server.endpoint,
        BACKEND_ACCESS_KEY=server.access_key,
        BACKEND_SECRET_KEY=server.secret_key,
    )
    env.update({f"BACKEND_{key.upper()}": value for key, value in overrides.items()})
    return env


def run_reference(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    stdin_text: str | None = None,
    cwd: Path | None = None,
) -> ClientResult:
    """Run a program of the reference venv (``bin/<argv[0]>``) with a timeout.

    `stdin_text` is what a user would type at the client's prompts (``input()``).
    """
    program = REFERENCE_VENV / "bin" / argv[0]
    done = subprocess.run(
        [str(program), *argv[1:]],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        input=stdin_text,
        stdin=subprocess.DEVNULL if stdin_text is None else None,
        check=False,
        cwd=cwd,
    )
    return ClientResult(done.returncode, done.stdout, done.stderr)


def cli(
    server: RunningCrucible,
    *argv: str,
    keys: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin_text: str | None = None,
) -> ClientResult:
    """The official CLI, ``backend.ai ARGV``, against `server` as `keys` (``access_key``,
    ``secret_key``; the server's own keypair by default), in `cwd`, typing `stdin_text`.
    Whatever it answers, it must not crash."""
    result = run_reference(
        ["backend.ai", *argv],
        reference_client_env(server, **(keys or {})),
        stdin_text=stdin_text,
        cwd=cwd,
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result


def add_keypair(server: RunningCrucible, user_id: str, *options: str) -> dict[str, str]:
    """A new keypair of `user_id`, made with ``admin keypairs add USER OPTIONS``:
    its ``user_id``, ``access_key`` and ``secret_key``."""
    added = cli(server, "admin", "keypairs", "add", user_id, *options)
    assert added.returncode == 0, added.stderr
    lines = dict(line.split(": ", 1) for line in added.stdout.splitlines() if ": " in line)
    return {
        "user_id": user_id,
        "access_key": lines["Access Key"].strip(),
        "secret_key": lines["Secret Key"].strip(),
    }


def run_probe(server: RunningCrucible, *args: str, **env_overrides: str) -> Any:
    """Run reference_probe.py with the reference venv's Python; return its JSON report."""
    result = run_reference(
        ["python", str(PROBE_SCRIPT), *args], reference_client_env(server, **env_overrides)
    )
    assert result.returncode == 0, f"probe failed ({result.returncode}):\n{result.stderr}"
    return result.json()
