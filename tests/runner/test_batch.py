"""Batch mode (generic shell steps) and compile-and-run query mode."""

from __future__ import annotations

import time
from collections.abc import Callable

from .conftest import RunnerProcess

TWO_FILE_PROGRAM = {
    "main.c": (
        "#include <stdio.h>\n"
        "int twice(int x);\n"
        "int main(void) {\n"
        '    int x;\n    printf("number? ");\n'
        '    if (scanf("%d", &x) != 1) return 2;\n'
        '    printf("%d\\n", twice(x));\n'
        '    fprintf(stderr, "to stderr\\n");\n'
        "    return 5;\n}\n"
    ),
    "twice.c": "int twice(int x) { return 2 * x; }\n",
}
ALL_DEFAULTS = {"clean": "*", "build": "*", "exec": "*", "buildLog": False}


def steps(result_messages: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [
        (m["op"], m.get("step"), m["exit_code"])
        for m in result_messages
        if m["op"] in ("step-finished", "finished")
    ]


def test_c_two_file_build_and_run_with_input(c_runner: RunnerProcess) -> None:
    for name, text in TWO_FILE_PROGRAM.items():
        (c_runner.workdir / name).write_text(text)
    client = c_runner.connect()
    result = client.run(mode="batch", options=ALL_DEFAULTS, inputs=["21"])
    assert steps(result.messages) == [
        ("step-finished", "clean", 0),
        ("step-finished", "build", 0),
        ("finished", None, 5),
    ]
    # The prompt (no newline) arrives before waiting-input; the input is not echoed.
    wait = next(i for i, m in enumerate(result.messages) if m["op"] == "waiting-input")
    before = "".join(
        d for m in result.messages[:wait] if m["op"] == "console" for k, d in m["items"]
    )
    assert before == "number? "
    assert result.stdout == "number? 42\n"
    assert result.stderr == "to stderr\n"
    assert (c_runner.workdir / "main").exists()


def test_compile_error_finishes_127_without_exec(c_runner: RunnerProcess) -> None:
    (c_runner.workdir / "main.c").write_text("int main(void) { return oops; }\n")
    client = c_runner.connect()
    result = client.run(mode="batch", options={**ALL_DEFAULTS, "exec": "echo should-not-run"})
    (clean, build, finished) = steps(result.messages)
    assert clean == ("step-finished", "clean", 0)
    assert build[:2] == ("step-finished", "build") and build[2] != 0
    assert finished == ("finished", None, 127)
    assert "oops" in result.stderr
    assert "should-not-run" not in result.stdout


def test_skipped_steps_still_report_in_order(c_runner: RunnerProcess) -> None:
    client = c_runner.connect()
    result = client.run(mode="batch", options={"clean": None, "build": "", "exec": None})
    assert steps(result.messages) == [
        ("step-finished", "clean", 0),
        ("step-finished", "build", 0),
        ("finished", None, 0),
    ]
    custom = client.run(
        mode="batch",
        options={"clean": "echo cleaning", "build": "echo building >&2", "exec": "exit 3"},
    )
    assert steps(custom.messages) == [
        ("step-finished", "clean", 0),
        ("step-finished", "build", 0),
        ("finished", None, 3),
    ]
    # Output before build-finished is the build's.
    ops = [(m["op"], m.get("items")) for m in custom.messages]
    assert ops[:4] == [
        ("console", [["stdout", "cleaning\n"]]),
        ("step-finished", None),
        ("console", [["stderr", "building\n"]]),
        ("step-finished", None),
    ]


def test_python_batch_default_runs_main_py(
    start_runner: Callable[[str], RunnerProcess],
) -> None:
    runner = start_runner("python")
    client = runner.connect()
    missing = client.run(mode="batch", options=ALL_DEFAULTS)
    assert missing.exit_code == 127
    assert "no default command" in missing.stderr
    (runner.workdir / "main.py").write_text("name = input('name? ')\nprint('hi', name)\n")
    result = client.run(mode="batch", options=ALL_DEFAULTS, inputs=["work"])
    # On a terminal, CPython's input() writes its prompt to stderr.
    assert result.console == [["stderr", "name? "], ["stdout", "hi work\n"]]
    assert result.exit_code == 0


def test_batch_interrupt(c_runner: RunnerProcess) -> None:
    client = c_runner.connect()
    run_id = client.execute(mode="batch", options={"exec": "echo start; sleep 30"})
    assert client.recv_op("console")["items"] == [["stdout", "start\n"]]
    started = time.monotonic()
    client.send({"op": "interrupt"})
    result = client.collect(run_id, timeout=10)
    assert result.exit_code != 0
    assert time.monotonic() - started < 5


def test_batch_eof_with_ctrl_d(c_runner: RunnerProcess) -> None:
    client = c_runner.connect()
    result = client.run(mode="batch", options={"exec": "wc -l"}, inputs=["a", "b", "\x04"])
    assert result.stdout.strip() == "2"


#: A thread that waits in poll(2) on a pipe of its own for a second, while fd 0 is the
#: terminal (as GHC's runtime does in every runghc snippet), then prints.
POLLS_ITS_OWN_PIPE = (
    "python3 -c 'import os, select, threading\n"
    "r, w = os.pipe()\n"
    "def wait():\n"
    "    p = select.poll(); p.register(r, select.POLLIN); p.poll(1500)\n"
    "t = threading.Thread(target=wait); t.start(); t.join(); print(\"done\")'"
)
#: A program that polls its terminal, then reads the line it waited for.
POLLS_THE_TERMINAL = (
    "python3 -c 'import select, sys\n"
    "p = select.poll(); p.register(0, select.POLLIN); p.poll()\n"
    "print(\"got\", sys.stdin.readline().strip())'"
)


def test_polling_another_descriptor_is_not_waiting_for_input(c_runner: RunnerProcess) -> None:
    client = c_runner.connect()
    # No inputs: a waiting-input would fail the run's collection.
    result = client.run(mode="batch", options={"exec": POLLS_ITS_OWN_PIPE})
    assert result.stdout.strip() == "done"
    assert result.prompts == []


def test_polling_the_terminal_is_waiting_for_input(c_runner: RunnerProcess) -> None:
    client = c_runner.connect()
    result = client.run(mode="batch", options={"exec": POLLS_THE_TERMINAL}, inputs=["yes"])
    assert result.prompts == [False]
    assert result.stdout.strip() == "got yes"


def test_c_query_compiles_and_runs_the_snippet(c_runner: RunnerProcess) -> None:
    client = c_runner.connect()
    code = (
        "#include <stdio.h>\n"
        'int main(void) { char s[32]; printf("? "); scanf("%31s", s); '
        'printf("got %s\\n", s); return 4; }\n'
    )
    result = client.run(code, inputs=["abc"])
    assert result.stdout == "? got abc\n"
    assert result.exit_code == 4
    assert [m["op"] for m in result.messages if m["op"] != "console"] == [
        "waiting-input",
        "finished",
    ]
    broken = client.run("int main(void) { nope }")
    assert broken.exit_code != 0
    assert "main.c" in broken.stderr
    # Scratch files are removed.
    assert list(c_runner.workdir.iterdir()) == []
