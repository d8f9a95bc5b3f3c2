"""Batch mode through the API (spec 4.6, 9): clean → build → exec, with every status.

Files reach the session through the upload API first, as the official client does.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from testlib.files import upload
from testlib.sessions import Cluster, create, execute, new_token, start_session, stream_text

ALL_DEFAULTS = {"clean": "*", "build": "*", "buildLog": False, "exec": "*"}

MAIN_C = b"""#include <stdio.h>
#include "greet.h"
int main(void) { greet("batch"); return 3; }
"""
GREET_H = b"void greet(const char *who);\n"
GREET_C = b"""#include <stdio.h>
#include "greet.h"
void greet(const char *who) { printf("hello, %s\\n", who); }
"""


def statuses(results: list[dict[str, Any]]) -> list[tuple[str, int | None]]:
    return [(r["status"], r["exitCode"]) for r in results if r["status"] != "continued"]


def text_before(results: list[dict[str, Any]], status: str, stream: str = "stdout") -> str:
    """Output given out up to and including the result with `status`."""
    out = []
    for result in results:
        out += [item[1] for item in result["console"] if item[0] == stream]
        if result["status"] == status:
            break
    return "".join(out)


@pytest.fixture
async def c_session(cluster: Cluster) -> str:
    return await start_session(cluster.client, "c", skip_without_image=True)


async def batch(cluster: Cluster, token: str, options: dict[str, Any], **kw: Any) -> list[Any]:
    return await execute(cluster.client, token, "", mode="batch", options=options, **kw)


async def test_default_build_and_run_of_two_files(cluster: Cluster, c_session: str) -> None:
    files = [("main.c", MAIN_C), ("greet.c", GREET_C), ("greet.h", GREET_H)]
    assert await upload(cluster, c_session, files) == 204
    results = await batch(cluster, c_session, ALL_DEFAULTS)
    assert statuses(results) == [("clean-finished", 0), ("build-finished", 0), ("finished", 3)]
    assert all(isinstance(r["console"], list) for r in results)
    assert stream_text(results) == "hello, batch\n"
    assert text_before(results, "build-finished") == ""


async def test_compile_error_then_127(cluster: Cluster, c_session: str) -> None:
    assert await upload(cluster, c_session, [("main.c", b"int main(void) { oops }\n")]) == 204
    results = await batch(cluster, c_session, ALL_DEFAULTS)
    steps = statuses(results)
    assert [s for s, _ in steps] == ["clean-finished", "build-finished", "finished"]
    assert steps[1][1] != 0
    assert steps[2] == ("finished", 127)
    # The compiler's complaint comes before build-finished.
    assert "error" in text_before(results, "build-finished", "stderr")


async def test_skipped_steps_still_report(cluster: Cluster, c_session: str) -> None:
    options = {"clean": None, "build": "", "buildLog": False, "exec": "echo ran; exit 5"}
    results = await batch(cluster, c_session, options)
    assert statuses(results) == [("clean-finished", 0), ("build-finished", 0), ("finished", 5)]
    assert stream_text(results) == "ran\n"


async def test_custom_commands_and_build_output_order(cluster: Cluster, c_session: str) -> None:
    program = b'#include <stdio.h>\nint main(void) { puts("x"); return 3; }\n'
    assert await upload(cluster, c_session, [("main.c", program)]) == 204
    options = {
        "clean": "rm -f prog; echo cleaned",
        "build": "echo building; gcc -o prog main.c",
        "buildLog": False,
        "exec": "./prog",
    }
    results = await batch(cluster, c_session, options)
    assert statuses(results) == [("clean-finished", 0), ("build-finished", 0), ("finished", 3)]
    assert text_before(results, "clean-finished") == "cleaned\n"
    assert text_before(results, "build-finished") == "cleaned\nbuilding\n"
    assert stream_text(results) == "cleaned\nbuilding\nx\n"


async def test_build_only_when_exec_is_empty(cluster: Cluster, c_session: str) -> None:
    assert await upload(cluster, c_session, [("main.c", b"int main(void){return 0;}\n")]) == 204
    results = await batch(cluster, c_session, {**ALL_DEFAULTS, "exec": ""})
    assert statuses(results) == [("clean-finished", 0), ("build-finished", 0), ("finished", 0)]
    listing = await cluster.client.get(f"/kernel/{c_session}/files", json={"path": "."})
    assert '"main"' in listing.json()["files"]


async def test_waiting_input_in_a_batch_program(cluster: Cluster, c_session: str) -> None:
    program = b"""#include <stdio.h>
int main(void) { char name[64]; printf("name? "); fflush(stdout);
  if (scanf("%63s", name) != 1) return 1; printf("hi %s\\n", name); return 0; }
"""
    assert await upload(cluster, c_session, [("main.c", program)]) == 204
    results = await batch(cluster, c_session, ALL_DEFAULTS, inputs=["Lablup"])
    waits = [r for r in results if r["status"] == "waiting-input"]
    assert len(waits) == 1 and waits[0]["options"] == {"is_password": False}
    assert statuses(results)[-1] == ("finished", 0)
    assert "hi Lablup" in stream_text(results)


async def test_long_batch_continues(cluster: Cluster, c_session: str) -> None:
    options = {"clean": None, "build": None, "exec": "echo a; sleep 2.5; echo b"}
    results = await batch(cluster, c_session, options)
    assert "continued" in [r["status"] for r in results]
    assert stream_text(results) == "a\nb\n"


async def test_python_batch_defaults(cluster: Cluster) -> None:
    token = new_token()
    assert (await create(cluster.client, token, "python")).status_code == 201
    files = [
        ("main.py", b"import helper\nhelper.hi()\n"),
        ("helper.py", b"def hi(): print('py')\n"),
    ]
    assert await upload(cluster, token, files) == 204
    results = await batch(cluster, token, ALL_DEFAULTS)
    assert statuses(results) == [("clean-finished", 0), ("build-finished", 0), ("finished", 0)]
    assert stream_text(results) == "py\n"


@pytest.mark.manager_config({"agent": {"max_exec_seconds": 3}})
async def test_batch_time_limit_ends_the_session(cluster: Cluster, c_session: str) -> None:
    results = await batch(cluster, c_session, {"clean": None, "build": None, "exec": "sleep 60"})
    assert results[-1]["status"] == "exec-timeout"
    with trio.fail_after(10):
        while (await cluster.client.get(f"/kernel/{c_session}")).status_code != 404:
            await trio.sleep(0.2)
