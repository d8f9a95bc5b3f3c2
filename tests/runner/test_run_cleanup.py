"""Every process a run starts ends with the run (finding 8 of issue 9), and the agent
connection survives the agent going away (the runner dials again)."""

from __future__ import annotations

import time

import psutil

from .conftest import RunnerClient, RunnerProcess

#: Starts processes that escape the run's process group in every usual way, and prints
#: their pids: a setsid'd sleep, a double-forked daemon, a nohup'ed background job and
#: a plain child of the interpreter.
ESCAPEES = r"""
import os, subprocess, time
out = subprocess.run(
    "setsid sleep 1000 >/dev/null 2>&1 & echo $!; nohup sleep 1001 >/dev/null 2>&1 & echo $!",
    shell=True, capture_output=True, text=True,
).stdout.split()
r, w = os.pipe()
if os.fork() == 0:
    if os.fork() == 0:
        os.setsid()
        os.write(w, str(os.getpid()).encode())
        time.sleep(1000)
    os._exit(0)
child = subprocess.Popen(["sleep", "1002"])
print(*out, os.read(r, 32).decode(), child.pid)
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _runner_tree(runner: RunnerProcess) -> list[psutil.Process]:
    return [
        p
        for p in psutil.Process(runner.proc.pid).children(recursive=True)
        if p.status() != psutil.STATUS_ZOMBIE
    ]


def _interpreter(runner: RunnerProcess) -> int:
    (child,) = psutil.Process(runner.proc.pid).children()
    return int(child.pid)


def test_processes_that_escape_the_process_group_end_with_the_run(
    python_runner: RunnerProcess, py: RunnerClient
) -> None:
    interpreter = _interpreter(python_runner)
    result = py.run(ESCAPEES)
    pids = [int(p) for p in result.stdout.split()]
    assert len(pids) == 4, result.console
    # `finished` comes after the sweep: nothing the run started is alive any more.
    assert [pid for pid in pids if _alive(pid)] == []
    assert [p.pid for p in _runner_tree(python_runner)] == [interpreter]
    # The interpreter (and its state) survives, and the next run works at once.
    started = time.monotonic()
    assert py.run("print(1)").stdout == "1\n"
    assert time.monotonic() - started < 2


def test_batch_daemons_end_with_the_run(python_runner: RunnerProcess) -> None:
    client = python_runner.connect()
    command = "setsid sleep 1000 & (sleep 1001 &) ; nohup sleep 1002 >/dev/null 2>&1 & echo ok"
    result = client.run(mode="batch", options={"clean": None, "build": None, "exec": command})
    assert result.stdout.strip() == "ok", result.console
    assert [p.pid for p in _runner_tree(python_runner)] == [_interpreter(python_runner)]


#: A process that keeps producing new double-forked daemons while the sweep runs
#: (bounded, since outside a container no pids limit would stop a real fork bomb).
RESPAWNER = r"""
import os, time
if os.fork() == 0:
    os.setsid()
    for _ in range(3000):
        try:
            if os.fork() == 0:
                if os.fork() == 0:
                    time.sleep(1000)
                os._exit(0)
        except OSError:
            pass
        time.sleep(0.002)
    os._exit(0)
time.sleep(0.5)
print("spawning")
"""


def test_the_sweep_converges_while_processes_keep_forking(
    python_runner: RunnerProcess, py: RunnerClient
) -> None:
    result = py.run(RESPAWNER)
    assert result.stdout == "spawning\n"
    assert [p.pid for p in _runner_tree(python_runner)] == [_interpreter(python_runner)]
    assert py.run("print(1)").stdout == "1\n"


def test_an_interrupted_run_leaves_nothing_behind(
    python_runner: RunnerProcess, py: RunnerClient
) -> None:
    run_id = py.execute(
        "import subprocess, time\n"
        "subprocess.Popen('setsid sleep 1000', shell=True)\n"
        "print('ready', flush=True)\n"
        "time.sleep(1000)\n"
    )
    while "ready" not in "".join(d for k, d in py.recv_op("console")["items"] if k == "stdout"):
        pass
    py.send({"op": "interrupt"})
    result = py.collect(run_id)
    assert "KeyboardInterrupt" in result.stderr
    assert [p.pid for p in _runner_tree(python_runner)] == [_interpreter(python_runner)]


# -- the agent connection -------------------------------------------------------------------


def test_the_runner_dials_again_until_an_agent_listens(python_runner: RunnerProcess) -> None:
    first = python_runner.connect()
    first.run("kept = 42")
    # The agent goes away with its socket; a new one appears a little later.
    python_runner.agent_gone()
    time.sleep(0.6)
    python_runner.listen()
    again = python_runner.accept(timeout=5)
    assert python_runner.last_hello["protocol"] == 2
    assert python_runner.last_hello["run"] is None
    assert again.run("print(kept)").stdout == "42\n"


def test_output_and_the_end_of_a_run_wait_for_the_next_agent(
    python_runner: RunnerProcess, py: RunnerClient
) -> None:
    run_id = py.execute("import time\nfor i in range(5):\n    print(i)\n    time.sleep(0.2)")
    py.recv_op("console")
    python_runner.agent_gone()
    # The run ends while no agent is connected...
    time.sleep(1.5)
    python_runner.listen()
    again = python_runner.accept()
    # ...so the next agent hears of it in hello, then gets what was held back.
    run = python_runner.last_hello["run"]
    assert (run["run_id"], run["finished"]) == (run_id, True)
    result = again.collect(run_id)
    assert result.exit_code == 0
    assert "4\n" in result.stdout
