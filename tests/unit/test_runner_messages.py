"""What a kernel's runner says is read defensively: the kernel writes it."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio

from crucible.agent.kernel.runner_messages import (
    CompletionRequests,
    ReportedRun,
    exit_code,
    reported_run,
)


@pytest.mark.parametrize(
    ("value", "code"),
    [(0, 0), (137, 137), (-9, -9), (2.0, 2), (True, -1), ("0", -1), (None, -1), (math.nan, -1)],
)
def test_exit_codes(value: object, code: int) -> None:
    assert exit_code({"exit_code": value}) == code


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        (None, None),
        ("r1", None),
        ({"run_id": ""}, None),
        ({"run_id": 7}, None),
        (
            {"run_id": "r1", "mode": "batch", "elapsed": 2.5, "finished": False},
            ReportedRun("r1", "batch", 2.5, False),
        ),
        # A broken mode is a query, a broken elapsed time "just started".
        ({"run_id": "r1", "mode": "x", "elapsed": -1}, ReportedRun("r1", "query", 0.0, False)),
        ({"run_id": "r1", "elapsed": math.inf}, ReportedRun("r1", "query", 0.0, False)),
        ({"run_id": "r1", "elapsed": True, "finished": 1}, ReportedRun("r1", "query", 0.0, False)),
        ({"run_id": "r1", "finished": True}, ReportedRun("r1", "query", 0.0, True)),
    ],
)
def test_the_run_a_hello_reports(run: object, expected: ReportedRun | None) -> None:
    assert reported_run({"op": "hello", "run": run}) == expected


async def test_a_completion_answer_that_is_not_a_list_has_no_candidates() -> None:
    requests = CompletionRequests()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        requests.answer(message["req_id"], 5)

    with trio.fail_after(5):
        assert await requests.request(send, "pri", {}, timeout=1.0) == []
    assert sent[0]["op"] == "complete"
