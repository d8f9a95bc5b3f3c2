"""Ending one run on the agent's word: the run-scoped ``interrupt`` and the ``kill`` op."""

from __future__ import annotations

import time

from .conftest import RunnerClient, RunnerProcess

IGNORES_SIGINT = (
    "import signal, time\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "print('stubborn', flush=True)\n"
    "while True:\n"
    "    time.sleep(0.05)\n"
)


def test_interrupt_for_another_run_is_ignored(py: RunnerClient) -> None:
    run_id = py.execute("import time\nprint('a', flush=True)\ntime.sleep(1)\nprint('b')")
    assert py.recv_op("console")["items"] == [["stdout", "a\n"]]
    py.send({"op": "interrupt", "run_id": "some-earlier-run"})
    result = py.collect(run_id, timeout=10)
    assert result.stdout == "b\n"
    assert "KeyboardInterrupt" not in result.stderr


def test_interrupt_for_this_run_interrupts_it(py: RunnerClient) -> None:
    run_id = py.execute("import time\nprint('a', flush=True)\ntime.sleep(30)")
    py.recv_op("console")
    py.send({"op": "interrupt", "run_id": run_id})
    assert "KeyboardInterrupt" in py.collect(run_id, timeout=10).stderr


def test_kill_ends_a_run_that_ignores_interrupts(py: RunnerClient) -> None:
    py.run("state = 'lost'")
    run_id = py.execute(IGNORES_SIGINT)
    assert py.recv_op("console")["items"] == [["stdout", "stubborn\n"]]
    py.send({"op": "interrupt", "run_id": run_id})
    time.sleep(0.3)
    started = time.monotonic()
    py.send({"op": "kill", "run_id": run_id})
    result = py.collect(run_id, timeout=10)
    assert time.monotonic() - started < 5
    assert result.exit_code != 0
    # The interpreter was the run: a fresh one serves the next run, without the old state.
    after = py.run("print(globals().get('state'))")
    assert after.stdout == "None\n"


def test_kill_of_a_batch_run_skips_its_remaining_steps(c_runner: RunnerProcess) -> None:
    client = c_runner.connect()
    marker = c_runner.workdir / "exec-ran"
    run_id = client.execute(
        mode="batch",
        options={
            "clean": "trap '' INT; echo cleaning; sleep 30",
            "build": "",
            "exec": f"touch {marker}",
        },
    )
    assert client.recv_op("console")["items"] == [["stdout", "cleaning\n"]]
    started = time.monotonic()
    client.send({"op": "kill", "run_id": run_id})
    result = client.collect(run_id, timeout=10)
    assert time.monotonic() - started < 5
    assert result.exit_code != 0
    assert not marker.exists()
    assert client.run(mode="batch", options={"exec": "echo next"}).stdout == "next\n"


def test_kill_of_an_unknown_run_changes_nothing(py: RunnerClient) -> None:
    run_id = py.execute("import time\ntime.sleep(0.5)\nprint('done')")
    py.send({"op": "kill", "run_id": "not-this-one"})
    assert py.collect(run_id, timeout=10).stdout == "done\n"
