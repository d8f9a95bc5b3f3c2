"""Runs whose client has gone are cancelled (spec 5.2: the server interrupts on disconnect).

A queued run never starts; a running one is interrupted and, if it outlives the grace
(``agent.run_cancel_grace``), killed. Issue 9, finding 7: 40 dropped WebSocket streams
left 40 queued runs that all executed, one after another, before the owner's next one.
"""

from __future__ import annotations

import json

import pytest
import trio

from testlib.sessions import (
    Cluster,
    execute,
    release_blocker,
    start_blocker,
    stream_text,
)
from testlib.signing import SigningClient
from testlib.streams import open_stream

#: What an abandoned run would leave behind, had it run.
TRACE = "/home/work/abandoned.txt"
LEAVES_A_TRACE = f"open({TRACE!r}, 'a').write('ran\\n')\nimport time\ntime.sleep(1)"
CHECK_TRACE = f"import os\nprint(os.path.exists({TRACE!r}))"
IGNORES_SIGINT = (
    "import signal, time\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "while True:\n"
    "    time.sleep(0.05)\n"
)
#: The owner's next run must start about at once once the session is free again.
PROMPT = 3.0


async def _timed_next_run(cluster: Cluster, token: str, code: str) -> tuple[str, float]:
    started = trio.current_time()
    with trio.fail_after(20):
        text = stream_text(await execute(cluster.client, token, code))
    return text, trio.current_time() - started


async def _call_then_hang_up(cluster: Cluster, token: str, code: str, after: float) -> None:
    """A REST execute whose client disconnects while the call still waits."""
    impatient = SigningClient(cluster.harness.url, cluster.harness.user)
    try:
        with trio.move_on_after(after) as scope:
            await impatient.post(
                f"/kernel/{token}", json={"mode": "query", "code": code, "runId": None}
            )
        assert scope.cancelled_caught, "the call should still have been waiting"
    finally:
        await impatient.aclose()


async def test_forty_dropped_streams_leave_nothing_to_run(cluster: Cluster, session: str) -> None:
    blocker = await start_blocker(cluster.client, session)

    async def open_and_drop() -> None:
        async with open_stream(cluster, f"/stream/kernel/{session}/execute") as ws:
            await ws.send_message(
                json.dumps({"mode": "query", "code": LEAVES_A_TRACE, "options": {}})
            )
            # Queued behind the blocker: the first frame says so, then the client goes.
            assert json.loads(await ws.get_message())["status"] == "continued"

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for _ in range(40):
                nursery.start_soon(open_and_drop)
    await release_blocker(cluster.client, session, blocker)
    text, waited = await _timed_next_run(cluster, session, "print('next')")
    assert text == "next\n"
    assert waited < PROMPT
    # None of the abandoned runs ever started.
    assert stream_text(await execute(cluster.client, session, CHECK_TRACE)) == "False\n"


async def test_rest_call_cut_off_while_queued_never_runs(cluster: Cluster, session: str) -> None:
    blocker = await start_blocker(cluster.client, session)
    # exec_flush_interval is 1 s in these tests: after 0.5 s the call still waits.
    await _call_then_hang_up(cluster, session, LEAVES_A_TRACE, after=0.5)
    await release_blocker(cluster.client, session, blocker)
    text, waited = await _timed_next_run(cluster, session, CHECK_TRACE)
    assert text == "False\n"
    assert waited < PROMPT


async def test_rest_call_cut_off_while_running_interrupts_the_run(
    cluster: Cluster, session: str
) -> None:
    await execute(cluster.client, session, "state = 'kept'")
    await _call_then_hang_up(cluster, session, "import time\ntime.sleep(60)", after=0.5)
    text, waited = await _timed_next_run(cluster, session, "print(state)")
    # An interrupt was enough: the interpreter, and its state, survive.
    assert text == "kept\n"
    assert waited < PROMPT


@pytest.mark.manager_config({"agent": {"run_cancel_grace": 1.0}})
async def test_a_cancelled_run_that_ignores_interrupts_is_killed(
    cluster: Cluster, session: str
) -> None:
    await execute(cluster.client, session, "state = 'kept'")
    await _call_then_hang_up(cluster, session, IGNORES_SIGINT, after=0.5)
    text, waited = await _timed_next_run(cluster, session, "print(globals().get('state'))")
    # Killed after the grace: the persistent interpreter went with it (a fresh one now).
    assert text == "None\n"
    # (The grace counts from the hang-up, which the server may see a little before us.)
    assert 0.8 <= waited < 1.0 + PROMPT


@pytest.mark.manager_config({"agent": {"uncollected_run_timeout": 2.0}})
async def test_a_run_nobody_collects_is_cancelled(cluster: Cluster, session: str) -> None:
    # A long-polling client that vanished between two calls: no disconnect to see.
    first = await cluster.client.post(
        f"/kernel/{session}",
        json={"mode": "query", "code": "import time\ntime.sleep(60)", "runId": None},
    )
    abandoned = first.json()["result"]
    assert abandoned["status"] == "continued"
    text, waited = await _timed_next_run(cluster, session, "print('next')")
    assert text == "next\n"
    assert waited < 2.0 + PROMPT
    # Should its client come back after all, the run reads as interrupted.
    late = await cluster.client.post(
        f"/kernel/{session}", json={"mode": "continue", "code": "", "runId": abandoned["runId"]}
    )
    result = late.json()["result"]
    assert result["status"] == "finished"
    assert "KeyboardInterrupt" in stream_text([result], "stderr")
