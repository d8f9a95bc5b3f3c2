"""The agent's execution limits: the per-kernel start rate, the run queue bound and the
agent-wide slots shared fairly between access keys (crucible.agent.execution.limits)."""

from __future__ import annotations

import pytest
import trio

from crucible.agent.execution.limits import ExecLimits, FairSlots, TokenBucket
from crucible.agent.execution.output import OutputLedger, Run
from crucible.agent.execution.queue import QueueFull, RunQueue
from crucible.config import AgentConfig, NonNegativeFloat, PositiveFloat, PositiveInt


async def test_bucket_lets_a_burst_through_then_paces(autojump_clock: trio.abc.Clock) -> None:
    bucket = TokenBucket(rate=10.0, burst=3)
    started = []
    with trio.fail_after(10):
        for _ in range(7):
            await bucket.wait_ready()
            bucket.take()
            started.append(trio.current_time())
    offsets = [round(t - started[0], 3) for t in started]
    assert offsets[:3] == [0, 0, 0]
    # Then one every 1/rate seconds.
    assert offsets[3:] == pytest.approx([0.1, 0.2, 0.3, 0.4], abs=0.002)


async def test_bucket_refills_while_idle(autojump_clock: trio.abc.Clock) -> None:
    bucket = TokenBucket(rate=2.0, burst=2)
    for _ in range(2):
        bucket.take()
    await trio.sleep(5)
    before = trio.current_time()
    for _ in range(2):
        await bucket.wait_ready()
        bucket.take()
    assert trio.current_time() == before  # refilled to the burst, no more


async def _hold(slots: FairSlots, key: str, seconds: float, log: list[str]) -> None:
    async with slots.hold(key):
        log.append(key)
        await trio.sleep(seconds)


async def test_a_freed_slot_goes_to_the_key_holding_fewest(
    autojump_clock: trio.abc.Clock,
) -> None:
    slots = FairSlots(2)
    order: list[str] = []
    async with trio.open_nursery() as nursery:
        # Tenant A takes both slots and has three more runs waiting before B's.
        for _ in range(5):
            nursery.start_soon(_hold, slots, "A", 1.0, order)
            await trio.sleep(0.01)
        nursery.start_soon(_hold, slots, "B", 1.0, order)
    # B is served as soon as the first slot frees, ahead of A's older waiters.
    assert order[:3] == ["A", "A", "B"]
    assert slots.in_use == 0 and slots.waiting == 0


async def test_one_slot_is_a_round_robin_between_keys(autojump_clock: trio.abc.Clock) -> None:
    slots = FairSlots(1)
    order: list[str] = []
    async with trio.open_nursery() as nursery:
        for key in ("A", "A", "A", "A", "B", "B"):
            nursery.start_soon(_hold, slots, key, 1.0, order)
            await trio.sleep(0.01)
    # The key that just released holds no slot either; "served least recently" decides.
    assert order == ["A", "B", "A", "B", "A", "A"]


async def test_a_cancelled_waiter_leaves_no_trace(autojump_clock: trio.abc.Clock) -> None:
    slots = FairSlots(1)
    await slots.acquire("A")
    with trio.move_on_after(1):
        await slots.acquire("B")
    assert slots.waiting == 0 and slots.held_by("B") == 0
    slots.release("A")
    assert slots.in_use == 0
    with trio.fail_after(1):
        async with slots.hold("B"):
            assert slots.held_by("B") == 1


def _run(run_id: str, code: str = "print(1)") -> Run:
    return Run(run_id, "query", code, {}, OutputLedger.from_config().session())


async def test_queue_refuses_past_its_length() -> None:
    queue = RunQueue(max_runs=2, max_chars=1000)
    queue.push(_run("a"))
    queue.push(_run("b"))
    with pytest.raises(QueueFull, match="2 runs are already queued"):
        queue.push(_run("c"))
    assert [r.run_id for r in queue] == ["a", "b"]


async def test_queue_refuses_past_its_code_size_but_takes_one_big_run() -> None:
    queue = RunQueue(max_runs=10, max_chars=100)
    queue.push(_run("big", "x" * 500))  # alone: the request body limit bounds it
    with pytest.raises(QueueFull, match="characters of code"):
        queue.push(_run("small", "x" * 10))
    assert queue.pop() is not None and queue.chars == 0
    queue.push(_run("small", "x" * 10))


async def test_queue_remove_and_early_cancels() -> None:
    queue = RunQueue(max_runs=10, max_chars=1000)
    first, second = _run("a"), _run("b")
    queue.push(first)
    queue.push(second)
    assert queue.remove(first) and not queue.remove(first)
    assert queue.pop() is second and queue.chars == 0
    queue.remember_cancel("late")
    assert queue.was_cancelled("late") and not queue.was_cancelled("late")


def test_limits_come_from_the_agent_config() -> None:
    config = AgentConfig(
        run_queue_length=PositiveInt(3),
        run_start_rate=PositiveFloat(7.5),
        uncollected_run_timeout=NonNegativeFloat(0.0),
    )
    limits = ExecLimits.from_config(config)
    assert (limits.queue_length, limits.start_rate, limits.uncollected_timeout) == (3, 7.5, 0.0)
    assert ExecLimits.defaults() == ExecLimits.from_config(AgentConfig())
