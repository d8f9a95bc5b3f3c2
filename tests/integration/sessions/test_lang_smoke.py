"""Every language through the API: query mode, state, errors, batch builds (spec 4.6, 9).

One session per language does everything, to keep container start-ups few. A language
whose image is not built here is skipped (``crucible images build LANG``; CI builds
python, c, cpp, nodejs and lua; scripts/test-all-languages builds the rest).
"""

from __future__ import annotations

import os
from typing import Any

import attrs
import pytest

from testlib.files import upload
from testlib.sessions import Cluster, execute, start_session, stream_text

DEFAULTS = {"clean": "*", "build": "*", "buildLog": False, "exec": "*"}
#: A build step that fails the way a compiler does, for interpreted languages without a
#: cheap syntax check.
FAILING_BUILD = "echo 'main: syntax error' >&2; exit 2"


@attrs.frozen
class LangCase:
    lang: str
    #: A query snippet printing 42.
    hello: str
    #: A snippet failing at run time, and a word its stderr must show.
    failing: str
    error_word: str
    #: Two source files that print "hello, batch" when built and run with the defaults.
    program: dict[str, str]
    #: A build command that fails on `broken` (a broken main file), or None to use the
    #: default build (compiled languages).
    broken: dict[str, str]
    check_build: str | None = None
    #: (set a variable, print it): where the kernel keeps state between runs.
    state: tuple[str, str] | None = None
    #: Extra seconds a slow tool chain may need (first JIT, GHC).
    slow: bool = False


def python3_case(lang: str, hello: str, state: tuple[str, str], *, slow: bool = False) -> LangCase:
    """An image of Python 3 (plain or with libraries): the same errors, batch program and
    syntax check; what differs is the snippet, the state and the speed."""
    return LangCase(
        lang,
        hello,
        "1/0",
        "ZeroDivisionError",
        {
            "main.py": "import greet\ngreet.hi()\n",
            "greet.py": "def hi():\n    print('hello, batch')\n",
        },
        {"main.py": "def (:\n"},
        "python3 -m py_compile main.py",
        state=state,
        slow=slow,
    )


CASES = [
    python3_case("python", "print(6*7)", ("answer = 40", "print(answer + 2)")),
    LangCase(
        "python2",
        "print 6*7",
        "1/0",
        "ZeroDivisionError",
        {
            "main.py": "import greet\ngreet.hi()\n",
            "greet.py": "def hi():\n    print 'hello, batch'\n",
        },
        {"main.py": "def (:\n"},
        "python2 -m py_compile main.py",
    ),
    LangCase(
        "c",
        '#include <stdio.h>\nint main(void) { printf("%d\\n", 6 * 7); return 0; }\n',
        '#include <stdio.h>\nint main(void) { fprintf(stderr, "boom\\n"); return 3; }\n',
        "boom",
        {
            "main.c": '#include "greet.h"\nint main(void) { greet(); return 0; }\n',
            "greet.h": "void greet(void);\n",
            "greet.c": '#include <stdio.h>\nvoid greet(void) { puts("hello, batch"); }\n',
        },
        {"main.c": "int main(void) { return oops; }\n"},
    ),
    LangCase(
        "cpp",
        "#include <iostream>\nint main() { std::cout << 6 * 7 << std::endl; }\n",
        '#include <stdexcept>\nint main() { throw std::runtime_error("boom"); }\n',
        "boom",
        {
            "main.cpp": '#include "greet.hpp"\nint main() { greet(); }\n',
            "greet.hpp": "void greet();\n",
            "greet.cpp": '#include <iostream>\nvoid greet() { std::cout << "hello, batch\\n"; }\n',
        },
        {"main.cpp": "int main() { return oops; }\n"},
    ),
    LangCase(
        "java",
        "System.out.println(6 * 7);",
        'throw new RuntimeException("boom");',
        "boom",
        {
            "Main.java": "public class Main {\n  public static void main(String[] a) {\n"
            "    Greet.hi();\n  }\n}\n",
            "Greet.java": "class Greet {\n"
            '  static void hi() { System.out.println("hello, batch"); }\n}\n',
        },
        {"Main.java": "public class Main { oops }\n"},
        slow=True,
    ),
    LangCase(
        "nodejs",
        "console.log(6 * 7)",
        "throw new Error('boom')",
        "boom",
        {
            "main.js": "require('./greet.js').hi()\n",
            "greet.js": "exports.hi = () => console.log('hello, batch')\n",
        },
        {"main.js": "function (\n"},
        "node --check main.js",
        state=("let answer = 40\nfunction plus(x) { return x + 2 }", "console.log(plus(answer))"),
    ),
    LangCase(
        "lua",
        "print(6 * 7)",
        "error('boom')",
        "boom",
        {
            "main.lua": "local greet = require('greet')\ngreet.hi()\n",
            "greet.lua": "return { hi = function() print('hello, batch') end }\n",
        },
        {"main.lua": "function (\n"},
        "luac5.4 -p main.lua",
    ),
    LangCase(
        "php",
        'echo 6 * 7, "\\n";',
        "throw new Exception('boom');",
        "boom",
        {
            "main.php": "<?php\nrequire 'greet.php';\nhi();\n",
            "greet.php": '<?php\nfunction hi() { echo "hello, batch\\n"; }\n',
        },
        {"main.php": "<?php\nfunction (\n"},
        "php -l main.php",
    ),
    LangCase(
        "r",
        'cat(6 * 7, "\\n", sep = "")',
        'stop("boom")',
        "boom",
        {
            "main.R": 'source("greet.R")\nhi()\n',
            "greet.R": 'hi <- function() cat("hello, batch\\n")\n',
        },
        {"main.R": "f <- function( {\n"},
        "Rscript -e 'invisible(parse(\"main.R\"))'",
    ),
    LangCase(
        "octave",
        "disp(6 * 7)",
        'error("boom")',
        "boom",
        {"main.m": "greet()\n", "greet.m": "function greet()\n  disp('hello, batch')\nend\n"},
        {"main.m": "x = (\n"},
        FAILING_BUILD,
    ),
    LangCase(
        "haskell",
        "print (6 * 7)",
        'error "boom"',
        "boom",
        {
            "Main.hs": "import Greet\nmain :: IO ()\nmain = hi\n",
            "Greet.hs": 'module Greet where\nhi :: IO ()\nhi = putStrLn "hello, batch"\n',
        },
        {"Main.hs": "main = = oops\n"},
        slow=True,
    ),
    LangCase(
        "julia",
        "println(6 * 7)",
        'error("boom")',
        "boom",
        {"main.jl": 'include("greet.jl")\nhi()\n', "greet.jl": 'hi() = println("hello, batch")\n'},
        {"main.jl": "function (\n"},
        FAILING_BUILD,
        slow=True,
    ),
    python3_case(
        "python-ml",
        "import numpy, pandas, sklearn, matplotlib, torch\nimport tensorflow as tf\n"
        "print(int(tf.constant(6) * int(torch.tensor(7))))",
        ("import numpy as np\nv = np.arange(3)", "print(int(v.sum()) * 14)"),
        slow=True,
    ),
    python3_case(
        "python-dl",
        "import caffe\nimport mxnet as mx\ncaffe.set_mode_cpu()\n"
        "print(int(mx.nd.array([6]).asnumpy()[0]) * 7)",
        ("import mxnet as mx\nv = mx.nd.array([20, 22])", "print(int(v.sum().asscalar()))"),
        slow=True,
    ),
]


def _statuses(results: list[dict[str, Any]]) -> list[tuple[str, int | None]]:
    return [(r["status"], r["exitCode"]) for r in results if r["status"] != "continued"]


@pytest.mark.parametrize("case", CASES, ids=[case.lang for case in CASES])
async def test_language(cluster: Cluster, case: LangCase) -> None:
    chosen = os.environ.get("CRUCIBLE_TEST_LANGS")
    if chosen and case.lang not in chosen.split():
        # scripts/test names the languages it built, so that images left on a machine
        # by other work do not change what CI tests.
        pytest.skip(f"{case.lang} is not among CRUCIBLE_TEST_LANGS ({chosen})")
    client = cluster.client
    token = await start_session(client, case.lang, skip_without_image=True)

    hello = await execute(client, token, case.hello)
    assert hello[-1]["status"] == "finished", hello
    assert stream_text(hello) == "42\n", hello
    assert hello[-1]["exitCode"] == 0

    failing = await execute(client, token, case.failing)
    assert failing[-1]["status"] == "finished"
    assert case.error_word in stream_text(failing, "stderr"), failing
    # The session survives its user's errors.
    assert stream_text(await execute(client, token, case.hello)) == "42\n"

    if case.state is not None:
        await execute(client, token, case.state[0])
        assert stream_text(await execute(client, token, case.state[1])) == "42\n"

    completion = await client.post(
        f"/kernel/{token}/complete",
        json={"code": "pri", "options": {"post": "", "line": "", "row": 0, "col": 0}},
    )
    assert completion.status_code == 200
    assert isinstance(completion.json()["result"], list)

    assert await upload(cluster, token, [(n, t.encode()) for n, t in case.program.items()]) == 204
    built = await execute(client, token, "", mode="batch", options=DEFAULTS)
    assert _statuses(built) == [("clean-finished", 0), ("build-finished", 0), ("finished", 0)], (
        built
    )
    assert stream_text(built).endswith("hello, batch\n"), built

    assert await upload(cluster, token, [(n, t.encode()) for n, t in case.broken.items()]) == 204
    options = dict(DEFAULTS)
    if case.check_build is not None:
        options["build"] = case.check_build
    broken = await execute(client, token, "", mode="batch", options=options)
    steps = _statuses(broken)
    assert [status for status, _ in steps] == ["clean-finished", "build-finished", "finished"]
    assert steps[1][1] not in (0, None), broken
    assert steps[2] == ("finished", 127), broken
