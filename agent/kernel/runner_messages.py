"""What a kernel's runner says, read defensively: the kernel writes it.

Its messages (docs/internals.md, "Agent ↔ kernel runner") become handovers of the
kernel's runs and answers to completion requests; anything malformed is ignored, never
trusted: a broken exit code reads as -1, a broken elapsed time as "just started".
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
import trio

from crucible.agent.execution.output import Handover, Run
from crucible.agent.kernel.services import ServiceRequests

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]


@attrs.frozen
class ReportedRun:
    """The run a runner's ``hello`` names: in progress, or its end still on the way."""

    run_id: str
    mode: str
    #: Seconds it has run; 0 when the report is broken.
    elapsed: float
    finished: bool


def reported_run(hello: Mapping[str, Any]) -> ReportedRun | None:
    """The run the ``hello`` reports (this agent restarted while it ran), if any."""
    reported = hello.get("run")
    if not isinstance(reported, dict):
        return None
    run_id = reported.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        return None
    mode = reported.get("mode")
    elapsed = reported.get("elapsed")
    if isinstance(elapsed, bool) or not isinstance(elapsed, (int, float)):
        elapsed = 0.0
    if not math.isfinite(elapsed) or elapsed < 0:
        elapsed = 0.0  # a broken report counts as "just started"
    return ReportedRun(
        run_id=run_id,
        mode=mode if mode in ("query", "batch") else "query",
        elapsed=float(elapsed),
        finished=reported.get("finished") is True,
    )


class CompletionRequests:
    """Completion requests sent to the runner and waiting for its answer."""

    def __init__(self) -> None:
        self._waiting: dict[str, trio.MemorySendChannel[list[str]]] = {}
        self._ids = itertools.count(1)

    async def request(
        self, send: Send, code: str, options: dict[str, Any], *, timeout: float
    ) -> list[str]:
        """The runner's candidates for `code`; none after `timeout` or if the kernel ends."""
        req_id = f"c{next(self._ids)}"
        channel, receive = trio.open_memory_channel[list[str]](1)
        self._waiting[req_id] = channel
        await send({"op": "complete", "req_id": req_id, "code": code, "options": options})
        with trio.move_on_after(timeout):
            async for items in receive:
                return items
        self._waiting.pop(req_id, None)
        return []

    def answer(self, req_id: str, items: object) -> None:
        channel = self._waiting.pop(req_id, None)
        if channel is not None:
            # Not a list: no candidates (a TypeError here would end the supervision).
            channel.send_nowait([str(i) for i in items] if isinstance(items, list) else [])
            channel.close()

    def close(self) -> None:
        """The kernel is gone: every request ends without candidates."""
        for channel in self._waiting.values():
            channel.close()
        self._waiting.clear()


class RunnerMessages:
    """Applies one kernel's runner messages to its runs and its completion requests.

    `on_finished(run, exit_code)` is told of every run's end.
    """

    def __init__(
        self,
        kernel_id: str,
        runs: Mapping[str, Run],
        completions: CompletionRequests,
        *,
        on_finished: Callable[[Run, int], None],
        services: ServiceRequests | None = None,
    ) -> None:
        self.kernel_id = kernel_id
        self._runs = runs
        self._completions = completions
        self._services = services or ServiceRequests()
        self._on_finished = on_finished

    def handle(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        run = self._runs.get(str(message.get("run_id")))
        if op == "console" and run is not None:
            for item in message.get("items") or []:
                if isinstance(item, list) and len(item) == 2:
                    run.add_console(item)
        elif op == "waiting-input" and run is not None:
            run.hand_over(
                Handover("waiting-input", options={"is_password": bool(message.get("is_password"))})
            )
        elif op == "step-finished" and run is not None:
            step = message.get("step")
            if step in ("clean", "build"):
                run.hand_over(Handover(f"{step}-finished", exit_code(message)))
        elif op == "finished" and run is not None:
            code = exit_code(message)
            run.hand_over(Handover("finished", code))
            self._on_finished(run, code)
        elif op == "completion":
            self._completions.answer(str(message.get("req_id")), message.get("items"))
        elif op == "service":
            self._services.answer(message)
        elif op == "error":
            log.warning("kernel %s: runner error: %s", self.kernel_id, message.get("message"))


def exit_code(message: Mapping[str, Any]) -> int:
    """A message's ``exit_code``; -1 when it is missing or not a number."""
    value = message.get("exit_code")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return -1
    return int(value)
