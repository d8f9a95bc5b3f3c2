"""Every process a run starts ends with the run (finding 8 of issue 9), and the agent
connection survives the agent going away (the runner dials again)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil

import crucible.agent.runner

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
    again = python_runner.replace_agent(gone_for=0.6, timeout=5)
    assert python_runner.last_hello["protocol"] == 2
    assert python_runner.last_hello["run"] is None
    assert again.run("print(kept)").stdout == "42\n"


def test_output_and_the_end_of_a_run_wait_for_the_next_agent(
    python_runner: RunnerProcess, py: RunnerClient
) -> None:
    """A run that ends while no agent is connected: the next agent hears of it in its
    hello, then gets what was held back."""
    run_id = py.execute("import time\nfor i in range(5):\n    print(i)\n    time.sleep(0.2)")
    py.recv_op("console")
    again = python_runner.replace_agent(gone_for=1.5)
    run = python_runner.last_hello["run"]
    assert (run["run_id"], run["finished"]) == (run_id, True)
    result = again.collect(run_id)
    assert result.exit_code == 0
    assert "4\n" in result.stdout


#: Run in a process of its own (the sweep kills its caller's descendants): a kept tree
#: survives whole, a kept process survives without its children, the rest goes.
KEPT_ROOTS = r"""
import os, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
from reaper import Reaper, become_reaper, descendants, scan_processes
assert become_reaper()
reaper = Reaper()
tree = subprocess.Popen(["sh", "-c", "sleep 100 & sleep 100 & wait"])
parent = "import subprocess, time; subprocess.Popen(['sleep', '100']); time.sleep(100)"
alone = subprocess.Popen([sys.executable, "-c", parent])
loose = subprocess.Popen(["sleep", "100"])
# Until every sleep has started (a loaded machine may take a while to start them).
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    table = scan_processes()
    if len(descendants(table, tree.pid)) >= 2 and descendants(table, alone.pid):
        break
    time.sleep(0.05)
for proc in (tree, alone, loose):
    reaper.own(proc.pid)
reaper.keep_tree(tree.pid)
reaper.keep(alone.pid)
killed = reaper.sweep()
deadline = time.monotonic() + 20
while loose.poll() is None and time.monotonic() < deadline:
    time.sleep(0.05)
print(killed, tree.poll() is None, alone.poll() is None, loose.poll() is not None)
table = scan_processes()
print(len([p for p in descendants(table, tree.pid) if table[p][1] != "Z"]))
reaper.release(tree.pid)
reaper.release(alone.pid)
reaper.sweep()
deadline = time.monotonic() + 20
while None in (tree.poll(), alone.poll()) and time.monotonic() < deadline:
    time.sleep(0.05)
print(tree.poll() is not None, alone.poll() is not None)
"""


def test_kept_roots_survive_sweeps_until_released(tmp_path: Path) -> None:
    runner_dir = Path(crucible.agent.runner.__file__).parent
    done = subprocess.run(
        [sys.executable, "-c", KEPT_ROOTS, str(runner_dir)],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    # killed: the kept process's sleep and the loose sleep; the tree's two sleeps live.
    assert done.stdout.split("\n")[:3] == ["2 True True True", "2", "True True"], done.stdout
