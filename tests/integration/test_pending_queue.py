"""The pending queue against the real database, without containers: agents are rows
(as their heartbeats write them) linked through a stand-in link, sessions are rows.

What a create waits for, how it ends on timeout or cancellation, the immediate refusal
of a session no agent could ever hold, and two managers placing from one queue.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
import trio

from crucible import errors
from crucible.cluster.directory import AgentDirectory
from crucible.cluster.links import AgentLink
from crucible.cluster.notices import AgentNotice
from crucible.db.pool import Database
from crucible.db.queries import agents as agent_rows
from crucible.db.queries import pending as queue_rows
from crucible.keypairs import Keypair, KeypairRepository, NewKeypair
from crucible.plugin_manager import load_agent_selector, load_scheduler
from crucible.resource_policies import ResourcePolicyStore
from crucible.sessions.endings import EndRecorder
from crucible.sessions.events import SessionEvents
from crucible.sessions.live import LiveSessionCache
from crucible.sessions.model import Session
from crucible.sessions.pending import PendingQueue
from crucible.sessions.placement import Placement, SessionRequest
from crucible.sessions.resources import Resources

TIMEOUT = 30
IMAGE = "crucible/kernel-python:test"
GiB = 1024**3
#: One agent that offers a single core.
ONE_CORE = {"a1": 1.0}


async def add_agent(db: Database, agent_id: str, cpu: float, mem: int = 8 * GiB) -> None:
    await agent_rows.record_heartbeat(
        db,
        agent_id,
        addr="127.0.0.1:1",
        version="test",
        capacity={"cpu": cpu, "mem": float(mem)},
        images=[{"ref": IMAGE, "id": "sha256:0", "labels": {}}],
    )


@asynccontextmanager
async def manager_queue(
    db: Database,
    agent_ids: list[str],
    *,
    pending_timeout: float = 20.0,
    scheduler: str = "fifo",
    head_block_timeout: float = 10.0,
) -> AsyncIterator[tuple[PendingQueue, Placement]]:
    """One manager's queue and placement, its background task running, linked (by a
    stand-in link: nothing is called of the agents here) to `agent_ids`."""
    send, receive = trio.open_memory_channel[AgentNotice](100)
    directory = AgentDirectory(db=db, notices=send, lost_after=60.0, scan_interval=60.0)
    for agent_id in agent_ids:
        directory.links[agent_id] = cast(AgentLink, object())
    queue = PendingQueue(
        db=db,
        scheduler=load_scheduler(scheduler),
        selector=load_agent_selector("dispersed"),
        agents=directory,
        endings=EndRecorder(db, SessionEvents(), LiveSessionCache(db, ttl=0, max_entries=1)),
        pending_timeout=pending_timeout,
        recheck_interval=30.0,  # long: a pass must come from a notification, not a tick
        head_block_timeout=head_block_timeout,
    )
    async with trio.open_nursery() as nursery, send, receive:
        await nursery.start(queue.run)
        yield queue, Placement(db, ResourcePolicyStore(db), queue)
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def user_and_queue(
    db: Database,
    keypairs: KeypairRepository,
    cores: Mapping[str, float] = ONE_CORE,
    **options: Any,
) -> AsyncIterator[tuple[Keypair, PendingQueue, Placement]]:
    """A user, and one manager's queue over agents that offer `cores` (by agent id)."""
    user = await keypairs.create(NewKeypair("user@test"))
    for agent_id, cpu in cores.items():
        await add_agent(db, agent_id, cpu=cpu)
    async with manager_queue(db, list(cores), **options) as (queue, placement):
        yield user, queue, placement


def request(keypair: Keypair, token: str, cpu: float) -> SessionRequest:
    return SessionRequest(keypair, token, "python", IMAGE, None, {}, Resources(cpu, GiB))


async def wait_into(queue: PendingQueue, session: Session, into: list[Session]) -> None:
    """Wait for `session`'s placement through `queue`; its placed row into `into`."""
    into.append(await queue.await_placement(session))


async def row(db: Database, kernel_id: str) -> dict[str, Any]:
    found = await db.fetchrow(
        "SELECT status, status_info, agent_id FROM kernels WHERE id = $1::uuid", kernel_id
    )
    return dict(found)


async def test_a_session_waits_then_runs_when_another_ends(
    db: Database, keypairs: KeypairRepository
) -> None:
    with trio.fail_after(TIMEOUT):
        async with user_and_queue(db, keypairs) as (user, queue, placement):
            first, created = await placement.place(request(user, "first", 1.0))
            assert created and first.status == "PREPARING" and first.agent_id == "a1"
            second, _ = await placement.place(request(user, "second", 1.0))
            assert second.status == "PENDING" and second.agent_id is None
            placed: list[Session] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_into, queue, second, placed)
                await trio.sleep(0.5)
                assert not placed  # no room yet: still waiting
                began = trio.current_time()
                await queue.endings.record(first.id, "user-requested")
            assert placed[0].status == "PREPARING" and placed[0].agent_id == "a1"
            # Woken by the end's notification, not by the (30 s) safety tick.
            assert trio.current_time() - began < 5


async def test_pending_timeout_is_503_and_leaves_nothing(
    db: Database, keypairs: KeypairRepository
) -> None:
    with trio.fail_after(TIMEOUT):
        async with user_and_queue(db, keypairs, pending_timeout=0.5) as (user, queue, placement):
            await placement.place(request(user, "holder", 1.0))
            waiting, _ = await placement.place(request(user, "waiter", 1.0))
            with pytest.raises(errors.InstanceNotAvailable, match=r"within 0\.5 s"):
                await queue.await_placement(waiting)
            assert await row(db, waiting.id) == {
                "status": "TERMINATED",
                "status_info": "pending-timeout",
                "agent_id": None,
            }
            assert not await queue_rows.any_waiting(db)


async def test_a_caller_gone_while_pending_ends_the_session(
    db: Database, keypairs: KeypairRepository
) -> None:
    with trio.fail_after(TIMEOUT):
        async with user_and_queue(db, keypairs) as (user, queue, placement):
            await placement.place(request(user, "holder", 1.0))
            waiting, _ = await placement.place(request(user, "waiter", 1.0))
            with trio.move_on_after(0.5):
                await queue.await_placement(waiting)
            assert (await row(db, waiting.id))["status_info"] == "creation-cancelled"
            assert (await row(db, waiting.id))["status"] == "TERMINATED"
            # The same token may be used again at once.
            again, created = await placement.place(request(user, "waiter", 1.0))
            assert created and again.status == "PENDING"


async def test_a_session_no_agent_could_hold_is_refused_at_once(
    db: Database, keypairs: KeypairRepository
) -> None:
    with trio.fail_after(TIMEOUT):
        cores = {"small": 2.0, "large": 4.0}
        async with user_and_queue(db, keypairs, cores) as (user, _, placement):
            with pytest.raises(errors.InstanceNotAvailable) as caught:
                await placement.place(request(user, "huge", 6.0))
            assert "asks for 6 of 'cpu', the largest agent offers 4" in str(caught.value)
            count = await db.fetchval("SELECT count(*) FROM kernels")
            assert count == 0


async def test_two_managers_share_one_queue_without_double_placement(
    db: Database, keypairs: KeypairRepository
) -> None:
    with trio.fail_after(TIMEOUT):
        user = await keypairs.create(NewKeypair("user@test", concurrency_limit=100))
        await add_agent(db, "a1", cpu=2.0)
        await add_agent(db, "a2", cpu=2.0)
        ids = []
        for i in range(12):
            waiting = await queue_rows.insert_pending(
                db,
                token=f"s{i:02}",
                access_key=user.access_key,
                image=IMAGE,
                lang="python",
                tag=None,
                environ={},
                slots={"cpu": 1.0, "mem": float(GiB)},
            )
            ids.append(waiting.id)
        async with (
            manager_queue(db, ["a1", "a2"]) as (one, _),
            manager_queue(db, ["a1", "a2"]) as (two, _),
        ):

            async def race() -> list[str]:
                placed: list[str] = []
                async with trio.open_nursery() as nursery:
                    for queue in (one, two, one, two, one, two):

                        async def dispatch(q: PendingQueue = queue) -> None:
                            placed.extend(await q.dispatch())

                        nursery.start_soon(dispatch)
                return placed

            first = await race()
            assert len(first) == len(set(first)) == 4  # four cores in all
            # A session the first manager places wakes the second manager's waiter.
            some = await queue_rows.by_id(db, ids[5])
            assert some is not None
            woken: list[Session] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_into, two, some, woken)
                await trio.sleep(0.2)
                # Two sessions end on a1: room for two more, placed once only.
                on_a1 = [k for k in first if (await row(db, k))["agent_id"] == "a1"]
                for kernel_id in on_a1:
                    await db.execute(
                        "UPDATE kernels SET status = 'TERMINATED' WHERE id = $1::uuid", kernel_id
                    )
                second = await race()
                assert len(second) == len(set(second)) == 2 and not set(second) & set(first)
                # FIFO: the oldest waiting first (s04, s05), whichever manager placed them.
                assert sorted(second) == sorted(ids[4:6])
                await queue_rows.notify_queue_changed(db)
            assert woken[0].agent_id == "a1"
        load = await db.fetch(
            """SELECT agent_id, sum((occupied_slots->>'cpu')::numeric) AS cpu FROM kernels
               WHERE status = 'PREPARING' GROUP BY agent_id"""
        )
        assert {r["agent_id"]: float(r["cpu"]) for r in load} == {"a1": 2.0, "a2": 2.0}


@pytest.mark.parametrize(
    ("scheduler", "expected"),
    [("fifo", "a-waiting"), ("lifo", "b-newest"), ("drf", "b-waiting")],
)
async def test_the_configured_scheduler_picks_who_goes_next(
    db: Database, keypairs: KeypairRepository, scheduler: str, expected: str
) -> None:
    with trio.fail_after(TIMEOUT):
        heavy = await keypairs.create(NewKeypair("heavy@test", concurrency_limit=10))
        light = await keypairs.create(NewKeypair("light@test", concurrency_limit=10))
        await add_agent(db, "a1", cpu=3.0)
        async with manager_queue(db, ["a1"], scheduler=scheduler) as (queue, placement):
            # The heavy key holds two of three cores; one core is left.
            for token in ("a-one", "a-two"):
                held, _ = await placement.place(request(heavy, token, 1.0))
                assert held.status == "PREPARING"
            # Nothing fits while a fourth session takes the last core...
            blocker, _ = await placement.place(request(light, "blocker", 1.0))
            assert blocker.status == "PREPARING"
            # ...and three wait: the heavy key's first, then two of the light key's.
            for keypair, token in ((heavy, "a-waiting"), (light, "b-waiting"), (light, "b-newest")):
                waiting, _ = await placement.place(request(keypair, token, 1.0))
                assert waiting.status == "PENDING"
            await queue.endings.record(blocker.id, "user-requested")
            with trio.fail_after(10):
                while not (placed := await _placed_tokens(db)) - {"a-one", "a-two"}:
                    await trio.sleep(0.05)
            # fifo: the oldest; lifo: the newest; drf: the light key (dominant share 0
            # against the heavy key's 2/3), its oldest.
            assert placed - {"a-one", "a-two"} == {expected}


async def _placed_tokens(db: Database) -> set[str]:
    rows = await db.fetch("SELECT sess_id FROM kernels WHERE status = 'PREPARING'")
    return {r["sess_id"] for r in rows}


async def test_the_fifo_head_holds_the_queue_for_a_bounded_time(
    db: Database, keypairs: KeypairRepository
) -> None:
    with trio.fail_after(TIMEOUT):
        opened = user_and_queue(db, keypairs, {"a1": 2.0}, head_block_timeout=1.5)
        async with opened as (user, queue, placement):
            await placement.place(request(user, "holder", 1.0))
            big, _ = await placement.place(request(user, "big", 2.0))
            began = trio.current_time()
            small, _ = await placement.place(request(user, "small", 1.0))
            # One core is free, but the older big session holds the queue...
            assert (big.status, small.status) == ("PENDING", "PENDING")
            placed: list[Session] = []
            await wait_into(queue, small, placed)
            # ...until it has waited 1.5 s; then the small one passes it, with no
            # capacity freed (the background task's tick follows the bound).
            assert 1.0 < trio.current_time() - began < 5
            assert (await row(db, big.id))["status"] == "PENDING"
