"""One placement pass as pure computation: the schedulers' orders (fifo, lifo, drf), the
agent selectors, the head-of-line bound and the never-fits check, over generic slots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crucible.hookspecs.scheduler import (
    AgentCapacity,
    AgentSelector,
    ClusterLoad,
    PendingSession,
    Scheduler,
)
from crucible.plugin_manager import PluginNotFound, load_agent_selector, load_scheduler
from crucible.plugins.schedulers.drf import DRFScheduler, dominant_share
from crucible.plugins.schedulers.fifo import FIFOScheduler
from crucible.plugins.schedulers.lifo import LIFOScheduler
from crucible.plugins.schedulers.selectors import (
    ConcentratedSelector,
    DispersedSelector,
    RoundRobinSelector,
)
from crucible.sessions.scheduling import Plan, never_fits, plan

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GiB = 1024.0**3


def session(
    kid: str,
    *,
    key: str = "AK1",
    at: int = 0,
    cpu: float = 1,
    mem: float = GiB,
    more: dict[str, float] | None = None,
) -> PendingSession:
    asked = {"cpu": cpu, "mem": mem, **(more or {})}
    return PendingSession(kid, key, asked, T0 + timedelta(seconds=at))


def agent(aid: str, cpu: float = 4, mem: float = 8 * GiB, **more: float) -> AgentCapacity:
    return AgentCapacity(aid, {"cpu": cpu, "mem": mem, **more}, {})


def placed(result: Plan) -> list[tuple[str, str]]:
    return [(d.session.kernel_id, d.agent_id) for d in result.decisions]


def run_plan(
    pending: list[PendingSession],
    agents: list[AgentCapacity],
    scheduler: Scheduler | None = None,
    selector: AgentSelector | None = None,
    *,
    head: float = 10.0,
    now_at: int = 1,
    by_key: dict[str, dict[str, float]] | None = None,
) -> Plan:
    return plan(
        pending,
        agents,
        scheduler=scheduler or FIFOScheduler(),
        selector=selector or DispersedSelector(),
        occupied_by_key=by_key or {},
        head_block_timeout=head,
        now=T0 + timedelta(seconds=now_at),
    )


def test_builtin_plugins_load_by_name() -> None:
    assert load_scheduler("fifo").name == "fifo"
    assert load_scheduler("lifo").name == "lifo"
    assert load_scheduler("drf").name == "drf"
    for name in ("dispersed", "concentrated", "round-robin"):
        assert load_agent_selector(name).name == name
    with pytest.raises(PluginNotFound, match="installed: concentrated, dispersed, round-robin"):
        load_agent_selector("random")


def test_fifo_places_the_oldest_first_and_lifo_the_newest() -> None:
    # Room for two of three one-core sessions.
    pending = [session("b", at=2), session("a", at=1), session("c", at=3)]
    agents = [agent("x", cpu=2)]
    assert placed(run_plan(pending, agents, FIFOScheduler())) == [("a", "x"), ("b", "x")]
    assert placed(run_plan(pending, agents, LIFOScheduler())) == [("c", "x"), ("b", "x")]


def test_fifo_head_holds_the_queue_for_a_bounded_time() -> None:
    pending = [session("big", at=0, cpu=4), session("small", at=1)]
    agents = [agent("x", cpu=2)]
    held = run_plan(pending, agents, head=10.0, now_at=3)
    assert placed(held) == []
    assert held.held_for == pytest.approx(7.0)
    # Once the head has waited longer than the bound, the others pass it.
    assert placed(run_plan(pending, agents, head=10.0, now_at=11)) == [("small", "x")]
    # LIFO never holds the queue: the old big one is passed over at once.
    lifo = run_plan([session("big", at=5, cpu=4), session("small", at=1)], agents, LIFOScheduler())
    assert placed(lifo) == [("small", "x")] and lifo.held_for is None


def test_drf_serves_the_key_with_the_smallest_dominant_share() -> None:
    # Key A already holds 6 of 8 cores; B holds nothing. A asked first, four times.
    pending = [session(f"a{i}", key="A", at=i) for i in range(4)]
    pending += [session(f"b{i}", key="B", at=10 + i) for i in range(4)]
    by_key = {"A": {"cpu": 6.0, "mem": 6 * GiB}}
    agents = [AgentCapacity("x", {"cpu": 8.0, "mem": 64 * GiB}, by_key["A"])]
    # Two cores are left: both go to B, though A's requests are older.
    assert placed(run_plan(pending, agents, DRFScheduler(), by_key=by_key)) == [
        ("b0", "x"),
        ("b1", "x"),
    ]
    # Even shares: the two keys alternate, each its oldest first.
    order = DRFScheduler().order(pending, ClusterLoad({"cpu": 8.0, "mem": 64 * GiB}, {}))
    assert [p.kernel_id for p in order] == ["a0", "b0", "a1", "b1", "a2", "b2", "a3", "b3"]


def test_drf_weighs_the_dominant_slot_whatever_its_name() -> None:
    capacity = {"cpu": 10.0, "mem": 100.0, "cuda.device": 4.0}
    # A holds 1 of 10 cores but 2 of 4 GPUs: its dominant share is 0.5.
    assert dominant_share({"cpu": 1.0, "cuda.device": 2.0}, capacity) == 0.5
    load = ClusterLoad(capacity, {"A": {"cpu": 1.0, "cuda.device": 2.0}, "B": {"cpu": 4.0}})
    pending = [session("a", key="A", at=0, mem=1), session("b", key="B", at=1, mem=1)]
    assert [p.kernel_id for p in DRFScheduler().order(pending, load)] == ["b", "a"]


def test_selectors_disperse_concentrate_and_rotate() -> None:
    agents = [
        AgentCapacity("busy", {"cpu": 4.0, "mem": 8 * GiB}, {"cpu": 3.0, "mem": 2 * GiB}),
        AgentCapacity("idle", {"cpu": 4.0, "mem": 8 * GiB}, {}),
        AgentCapacity("full", {"cpu": 4.0, "mem": 8 * GiB}, {"cpu": 4.0}),
    ]
    one = session("s")

    def chosen(selector: AgentSelector) -> str | None:
        choice = selector.select(one, agents)
        return None if choice is None else choice.agent_id

    assert chosen(DispersedSelector()) == "idle"
    assert chosen(ConcentratedSelector()) == "busy"
    rr = RoundRobinSelector()
    assert [chosen(rr) for _ in range(3)] == ["busy", "idle", "busy"]
    assert DispersedSelector().select(session("big", cpu=5), agents) is None


def test_placement_takes_room_slot_by_slot_for_any_slot_name() -> None:
    # Accelerator slots are names like any other: two GPUs on one agent, none on the other.
    agents = [agent("cpu-only", cpu=16), agent("gpu", cpu=16, **{"cuda.device": 2.0})]
    pending = [session(f"g{i}", at=i, more={"cuda.device": 1.0}) for i in range(3)]
    result = run_plan(pending, agents, LIFOScheduler())
    assert sorted(placed(result)) == [("g1", "gpu"), ("g2", "gpu")]


def test_a_pass_never_overbooks_an_agent() -> None:
    agents = [agent(f"a{i}", cpu=4, mem=4 * GiB) for i in range(5)]
    pending = [session(f"s{i}", at=i, cpu=1.5, mem=1.5 * GiB) for i in range(40)]
    result = run_plan(pending, agents, LIFOScheduler(), ConcentratedSelector())
    per_agent: dict[str, float] = {}
    for _, aid in placed(result):
        per_agent[aid] = per_agent.get(aid, 0) + 1.5
    assert len(placed(result)) == 10 and all(v <= 4 for v in per_agent.values())


def test_only_agents_with_the_image_are_offered() -> None:
    with_image = AgentCapacity("py", {"cpu": 1.0}, {}, frozenset({"img:py"}))
    without = AgentCapacity("node", {"cpu": 8.0}, {}, frozenset({"img:node"}))
    pending = [PendingSession("s", "AK", {"cpu": 1.0}, T0, "img:py")]
    assert placed(run_plan(pending, [with_image, without])) == [("s", "py")]


def test_never_fits_names_the_slot_and_the_largest_offer() -> None:
    agents = [agent("a", cpu=4), agent("b", cpu=8)]
    assert never_fits({"cpu": 8.0, "mem": GiB}, agents) is None
    why = never_fits({"cpu": 9.0, "mem": GiB}, agents)
    assert why == "it asks for 9 of 'cpu', the largest agent offers 8"
    assert "'cuda.device'" in (never_fits({"cpu": 1.0, "cuda.device": 1.0}, agents) or "")
    assert never_fits({"cpu": 1.0}, []) == "no agent that can run it is linked to this manager"
    # Each slot fits somewhere, but no single agent holds both.
    split = [agent("c", cpu=8, mem=GiB), agent("m", cpu=1, mem=8 * GiB)]
    assert never_fits({"cpu": 8.0, "mem": 8 * GiB}, split) == (
        "no single agent offers all it asks for at once"
    )
