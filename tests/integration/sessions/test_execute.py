"""Query-mode execution through the API (spec 4.6-4.8)."""

from __future__ import annotations

import pytest
import trio

from testlib.sessions import Cluster, execute, stream_text


async def test_print(cluster: Cluster, session: str) -> None:
    results = await execute(cluster.client, session, "print(6*7)")
    final = results[-1]
    assert final["status"] == "finished"
    assert final["exitCode"] == 0
    assert final["options"] is None
    assert final["files"] == []
    assert stream_text(results) == "42\n"


async def test_state_is_kept(cluster: Cluster, session: str) -> None:
    await execute(cluster.client, session, "answer = 42")
    assert stream_text(await execute(cluster.client, session, "print(answer)")) == "42\n"


async def test_runtime_error_goes_to_stderr(cluster: Cluster, session: str) -> None:
    results = await execute(cluster.client, session, "1/0")
    assert results[-1]["exitCode"] == 0
    assert "ZeroDivisionError" in stream_text(results, "stderr")
    assert stream_text(await execute(cluster.client, session, "print('alive')")) == "alive\n"


async def test_input_and_getpass(cluster: Cluster, session: str) -> None:
    code = (
        "import getpass\nname = input('name? ')\npw = getpass.getpass('pw? ')\nprint(name, len(pw))"
    )
    results = await execute(cluster.client, session, code, inputs=["Lablup", "secret"])
    waits = [r for r in results if r["status"] == "waiting-input"]
    assert [w["options"]["is_password"] for w in waits] == [False, True]
    assert "Lablup 6" in stream_text(results)


async def test_long_run_continues(cluster: Cluster, session: str) -> None:
    results = await execute(
        cluster.client, session, "import time\nprint('a', flush=True)\ntime.sleep(2.5)\nprint('b')"
    )
    assert results[0]["status"] == "continued"
    assert stream_text(results) == "a\nb\n"


async def test_interleaving_is_kept(cluster: Cluster, session: str) -> None:
    code = "import sys\nfor i in range(3):\n    print(i)\n    print('e', i, file=sys.stderr)"
    results = await execute(cluster.client, session, code)
    console = [item for r in results for item in r["console"]]
    assert [kind for kind, _ in console] == ["stdout", "stderr"] * 3


async def test_interrupt_keeps_the_kernel(cluster: Cluster, session: str) -> None:
    first = await cluster.client.post(
        f"/kernel/{session}", json={"mode": "query", "code": "while True: pass", "runId": None}
    )
    run_id = first.json()["result"]["runId"]
    assert first.json()["result"]["status"] == "continued"
    response = await cluster.client.post(f"/kernel/{session}/interrupt")
    assert response.status_code == 204
    with trio.fail_after(20):
        while True:
            result = (
                await cluster.client.post(
                    f"/kernel/{session}", json={"mode": "continue", "code": "", "runId": run_id}
                )
            ).json()["result"]
            if result["status"] == "finished":
                break
    assert stream_text(await execute(cluster.client, session, "print('ok')")) == "ok\n"


async def test_completion(cluster: Cluster, session: str) -> None:
    await execute(cluster.client, session, "import math")
    response = await cluster.client.post(
        f"/kernel/{session}/complete",
        json={"code": "math.sq", "options": {"post": "", "line": "", "row": 0, "col": 0}},
    )
    assert response.status_code == 200
    assert "math.sqrt" in response.json()["result"]


async def test_continue_without_run_id_is_400(cluster: Cluster, session: str) -> None:
    response = await cluster.client.post(f"/kernel/{session}", json={"mode": "continue"})
    assert response.status_code == 400
    response = await cluster.client.post(f"/kernel/{session}", json={"mode": "dance"})
    assert response.status_code == 400


async def test_matplotlib_figure_is_media(cluster: Cluster, session: str) -> None:
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()"
    results = await execute(cluster.client, session, code)
    media = [item[1] for r in results for item in r["console"] if item[0] == "media"]
    assert media, results
    mime, data = media[0]
    assert mime in ("image/svg+xml", "image/png")
    assert "<svg" in data or data.startswith("data:image/png;base64,")


@pytest.mark.manager_config({"agent": {"max_exec_seconds": 3}})
async def test_exec_timeout_ends_the_session(cluster: Cluster, session: str) -> None:
    results = await execute(cluster.client, session, "while True: pass")
    assert results[-1]["status"] == "exec-timeout"
    with trio.fail_after(10):
        while (await cluster.client.get(f"/kernel/{session}")).status_code != 404:
            await trio.sleep(0.2)
