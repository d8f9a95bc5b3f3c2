"""Query mode of the Python recipe: a persistent interpreter in a child process."""

from __future__ import annotations

import time

import pytest

from .conftest import RunnerClient, RunnerProcess, runner_python_has


def test_print_and_exit_code(py: RunnerClient) -> None:
    result = py.run("print('hello', 6 * 7)")
    assert result.console == [["stdout", "hello 42\n"]]
    assert result.ops == ["finished"]
    assert result.exit_code == 0


def test_globals_survive_between_runs(py: RunnerClient) -> None:
    py.run("counter = 41\ndef bump():\n    global counter\n    counter += 1")
    py.run("bump()")
    assert py.run("print(counter, __name__)").stdout == "42 __main__\n"


def test_last_expression_is_not_echoed(py: RunnerClient) -> None:
    assert py.run("1 + 1").console == []


def test_stdout_stderr_interleaving_is_kept(py: RunnerClient) -> None:
    code = (
        "import sys\n"
        "for i in range(3):\n"
        "    print('out', i)\n"
        "    print('err', i, file=sys.stderr)\n"
        "print('a'); print('b')\n"
    )
    assert py.run(code).console == [
        ["stdout", "out 0\n"],
        ["stderr", "err 0\n"],
        ["stdout", "out 1\n"],
        ["stderr", "err 1\n"],
        ["stdout", "out 2\n"],
        ["stderr", "err 2\n"],
        ["stdout", "a\nb\n"],
    ]


def test_subprocess_output_is_captured(py: RunnerClient) -> None:
    result = py.run("import os\nprint('before', flush=True)\nos.system('echo shell')")
    assert "shell\n" in result.stdout
    assert "before\n" in result.stdout


def test_forked_children_still_print(py: RunnerClient) -> None:
    code = (
        "import multiprocessing as mp\n"
        "def work(i):\n"
        "    print('worker', i, 'x' * 300_000)\n"
        "    return i\n"
        "with mp.get_context('fork').Pool(2) as pool:\n"
        "    print(sorted(pool.map(work, range(2))))\n"
    )
    result = py.run(code, timeout=30)
    assert result.stdout.count("worker") == 2
    assert "[0, 1]\n" in result.stdout


def test_exception_prints_traceback_and_exits_zero(py: RunnerClient) -> None:
    result = py.run("x = 1\ndef f():\n    return 1 / 0\nf()")
    assert result.exit_code == 0
    assert result.stderr.startswith("Traceback (most recent call last):\n")
    assert "return 1 / 0" in result.stderr  # source lines of the cell are shown
    assert result.stderr.rstrip().endswith("ZeroDivisionError: division by zero")
    assert "pychild" not in result.stderr  # the runner's own frames are hidden
    syntax = py.run("def (:")
    assert "SyntaxError" in syntax.stderr
    assert syntax.exit_code == 0
    assert py.run("print(x)").stdout == "1\n"


def test_sys_exit_keeps_the_kernel(py: RunnerClient) -> None:
    py.run("kept = 'yes'")
    result = py.run("import sys\nsys.exit('bye')")
    assert result.stderr == "bye\n"
    assert result.exit_code == 0
    assert py.run("print(kept)").stdout == "yes\n"


def test_input_and_getpass(py: RunnerClient) -> None:
    code = (
        "name = input('name? ')\n"
        "import getpass\n"
        "pw = getpass.getpass()\n"
        "line = __import__('sys').stdin.readline()\n"
        "print(name, len(pw), repr(line))"
    )
    result = py.run(code, inputs=["Lablup", "secret", "third"])
    assert result.prompts == [False, True, False]
    assert result.ops == ["waiting-input"] * 3 + ["finished"]
    # The prompt is sent before waiting-input.
    first_wait = result.messages.index(next(m for m in result.messages if m["op"] != "console"))
    assert result.messages[0] == {
        "op": "console",
        "run_id": "run-1",
        "items": [["stdout", "name? "]],
    }
    assert first_wait == 1
    assert result.stdout == "name? Password: Lablup 6 'third\\n'\n"


def test_input_for_another_run_is_an_error(py: RunnerClient) -> None:
    run_id = py.execute("print(input())")
    assert py.recv_op("waiting-input")["run_id"] == run_id
    py.send({"op": "input", "run_id": "nope", "text": "x"})
    assert py.recv_op("error")["run_id"] == "nope"
    py.send({"op": "input", "run_id": run_id, "text": "ok"})
    assert py.collect(run_id).stdout == "ok\n"


def test_interrupt_busy_loop_keeps_globals(py: RunnerClient) -> None:
    py.run("state = 'kept'")
    run_id = py.execute("print('spinning', flush=True)\nwhile True:\n    pass")
    started = py.recv_op("console")
    assert started["items"] == [["stdout", "spinning\n"]]
    time.sleep(0.2)
    py.send({"op": "interrupt"})
    result = py.collect(run_id, timeout=10)
    assert result.exit_code == 0
    assert "KeyboardInterrupt" in result.stderr
    assert py.run("print(state)").stdout == "kept\n"


def test_interrupt_while_waiting_for_input(py: RunnerClient) -> None:
    run_id = py.execute("input('? ')")
    py.recv_op("waiting-input")
    py.send({"op": "interrupt"})
    result = py.collect(run_id, timeout=10)
    assert "KeyboardInterrupt" in result.stderr
    # The stale request is gone: the next input() waits for a new answer.
    assert py.run("print(input())", inputs=["fresh"]).stdout == "fresh\n"


def test_output_flood_flows_with_bounded_memory(
    python_runner: RunnerProcess, py: RunnerClient
) -> None:
    size = 50_000_000
    run_id = py.execute(f"print('x' * {size})\nprint('end')")
    # Do not read for a while: the runner must stop reading the child, not buffer.
    time.sleep(1.0)
    received = 0
    largest = 0

    def count(message: dict[str, object]) -> None:
        nonlocal received, largest
        if message["op"] == "console":
            items = message["items"]
            assert isinstance(items, list)
            received += sum(len(data) for _, data in items)
            largest = max(largest, sum(len(data) for _, data in items))

    result = py.collect(run_id, timeout=120, on_message=count)
    assert result.exit_code == 0
    assert received == size + len("\nend\n")
    assert largest <= 64 * 1024
    status = open(f"/proc/{python_runner.proc.pid}/status").read()
    peak_kib = int(
        next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]
    )
    assert peak_kib < 60 * 1024, f"runner peak RSS {peak_kib} KiB"


def test_completion(py: RunnerClient) -> None:
    py.run("import os\nmy_variable = 3")
    py.send({"op": "complete", "req_id": "c1", "code": "x = my_va", "options": {}})
    reply = py.recv_op("completion")
    assert reply == {"op": "completion", "req_id": "c1", "items": ["my_variable"]}
    py.send({"op": "complete", "req_id": "c2", "code": "os.pa", "options": {}})
    assert "os.path" in py.recv_op("completion")["items"]
    py.send({"op": "complete", "req_id": "c3", "code": "", "options": {}})
    assert py.recv_op("completion")["items"] == []


def test_completion_while_code_runs(py: RunnerClient) -> None:
    py.run("import time\nbusy_flag = 1")
    run_id = py.execute("time.sleep(1)")
    py.send({"op": "complete", "req_id": "c", "code": "busy_f", "options": {}})
    assert py.recv_op("completion", timeout=5)["items"] == ["busy_flag"]
    py.collect(run_id)


@pytest.mark.parametrize(
    ("code", "exit_code"),
    [
        ("import os\nos._exit(3)", 3),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", -9),
        ("import ctypes\nctypes.string_at(0)", -11),
    ],
)
def test_child_crash_is_reported_and_a_fresh_child_follows(
    py: RunnerClient, code: str, exit_code: int
) -> None:
    py.run("lost = True")
    result = py.run(code)
    assert result.exit_code == exit_code
    after = py.run("print('alive')\nprint('lost' in globals())")
    assert after.stdout == "alive\nFalse\n"
    assert after.exit_code == 0


def test_display_html(py: RunnerClient) -> None:
    code = (
        "class Table:\n"
        "    def _repr_html_(self):\n"
        "        return '<table></table>'\n"
        "print('before')\n"
        "display(Table(), 5)\n"
    )
    assert py.run(code).console == [
        ["stdout", "before\n"],
        ["html", "<table></table>"],
        ["stdout", "5\n"],
    ]


def test_matplotlib_show_sends_svg(py: RunnerClient) -> None:
    if not runner_python_has("matplotlib"):
        pytest.skip("matplotlib is not installed (set CRUCIBLE_RUNNER_PYTHON to one with it)")
    result = py.run(
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()\nprint('shown')"
    )
    assert result.stderr == ""
    media = [data for kind, data in result.console if kind == "media"]
    assert len(media) == 1
    mime, svg = media[0]
    assert mime == "image/svg+xml"
    assert "<svg" in svg
    assert result.console[-1] == ["stdout", "shown\n"]


def test_reconnect_keeps_state(python_runner: RunnerProcess, py: RunnerClient) -> None:
    py.run("survivor = 'still here'")
    py.close()
    again = python_runner.connect()
    assert again.run("print(survivor)").stdout == "still here\n"


def test_a_new_agent_adopts_the_run_in_progress(
    python_runner: RunnerProcess, py: RunnerClient
) -> None:
    run_id = py.execute("print(input('who? '))")
    py.recv_op("waiting-input")
    py.close()  # the agent died; the runner dials the next one
    second = python_runner.accept()
    run = python_runner.last_hello["run"]
    assert (run["run_id"], run["mode"], run["finished"]) == (run_id, "query", False)
    assert 0 <= run["elapsed"] < 15
    # The new agent learns that the run waits for input.
    assert second.recv_op("waiting-input")["run_id"] == run_id
    second.send({"op": "input", "run_id": run_id, "text": "me"})
    assert second.collect(run_id).stdout == "me\n"
