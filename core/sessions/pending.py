"""The pending queue: sessions that fit no agent wait as PENDING rows, and are placed
when capacity frees.

Any manager may place any pending session: a pass runs under the cluster-wide placement
lock (`PLACEMENT_LOCK_ID`), so two managers never place the same session twice nor
overbook an agent. The manager holding the create request of a session (its *waiter*)
creates the kernel once the row says PREPARING; nobody else does, so a waiter that
gives up (timeout, client gone) leaves no container behind.

A pass runs when something may have freed room, never on a short tick: a session's end
is announced through the database (``NOTIFY``, `crucible.db.queries.pending`) to every
manager, which re-runs placement and wakes its waiters; an agent that joins or reports
more room wakes this manager's pass (`agent_reported`). A long safety tick
(``sessions.pending_recheck_interval``) covers a notification lost between managers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime

import attrs
import trio

from crucible import errors
from crucible.cluster.directory import AgentDirectory
from crucible.db.pool import Database, Executor, listen
from crucible.db.queries import agents as agent_rows
from crucible.db.queries import locks
from crucible.db.queries import pending as queue_rows
from crucible.hookspecs.scheduler import AgentCapacity, AgentSelector, PendingSession, Scheduler
from crucible.sessions.endings import EndRecorder
from crucible.sessions.model import Session
from crucible.sessions.scheduling import plan
from crucible.usage import record_session_starts

log = logging.getLogger(__name__)

#: Queue notifications held for a slow pass (beyond them the rest stand as one: a pass
#: only needs to know *that* the queue may move).
LISTEN_BUFFER = 64

#: pg_advisory_xact_lock key serialising placement decisions cluster-wide.
PLACEMENT_LOCK_ID = 0x43525550  # "CRUP"
#: Seconds by which the end of a head's hold must move earlier to wake a pass.
HELD_MARGIN = 0.05


@attrs.define(kw_only=True)
class PendingQueue:
    db: Database
    scheduler: Scheduler
    selector: AgentSelector
    #: Only agents linked to this manager are candidates: it must talk to them.
    agents: AgentDirectory
    endings: EndRecorder
    #: ``sessions.pending_timeout``: how long a create waits in the queue.
    pending_timeout: float
    #: ``sessions.pending_recheck_interval``: the safety tick.
    recheck_interval: float
    #: ``scheduler.head_block_timeout``.
    head_block_timeout: float
    #: Set when a pass may place something; the background task waits on it.
    _wake: trio.Event = attrs.field(init=False, factory=trio.Event)
    #: Per waiting session (kernel id), set when its row may have left PENDING.
    _waiters: dict[str, trio.Event] = attrs.field(init=False, factory=dict)
    #: What each agent offered at its last report (a change wakes a pass).
    _offers: dict[str, dict[str, float]] = attrs.field(init=False, factory=dict)
    #: trio time at which the head holding the queue stops holding it.
    _held_until: float = attrs.field(init=False, default=math.inf)

    # -- what wakes a pass ----------------------------------------------------------------

    def capacity_changed(self) -> None:
        self._wake.set()

    def agent_reported(self, agent_id: str, capacity: Mapping[str, float]) -> None:
        """An agent's heartbeat: a new agent, or one offering other room, may take a
        waiting session."""
        offer = dict(capacity)
        if self._offers.get(agent_id) != offer:
            self._offers[agent_id] = offer
            self.capacity_changed()

    # -- a pass ---------------------------------------------------------------------------

    async def candidates(self, conn: Executor) -> list[AgentCapacity]:
        """The alive agents linked here, what they offer and what their kernels hold."""
        occupied = await queue_rows.occupied_by_agent(conn)
        return [
            AgentCapacity(
                agent_id=agent.id,
                available={k: float(v) for k, v in agent.available_slots.items()},
                occupied=occupied.get(agent.id, {}),
                images=frozenset(str(i["ref"]) for i in agent.images),
            )
            for agent in await agent_rows.with_status(conn, "ALIVE")
            if agent.id in self.agents.links
        ]

    async def place_waiting(self, conn: Executor, agents: list[AgentCapacity]) -> list[str]:
        """One pass over the queue, in the caller's transaction, which holds the
        placement lock; the ids of the sessions placed (announce them after commit)."""
        await queue_rows.expire_stale(conn, 2 * self.pending_timeout, "pending-timeout")
        rows = await queue_rows.waiting(conn)
        if not rows:
            self._held_until = math.inf
            return []
        pending = [
            PendingSession(row.id, row.access_key, row.occupied_slots, row.created_at, row.image)
            for row in rows
        ]
        result = plan(
            pending,
            agents,
            scheduler=self.scheduler,
            selector=self.selector,
            occupied_by_key=await queue_rows.occupied_by_key(conn),
            head_block_timeout=self.head_block_timeout,
            now=datetime.now(UTC),
        )
        held = result.held_for
        held_until = math.inf if held is None else trio.current_time() + held
        # The background task's tick must come sooner (past a margin: the wall clock
        # and trio's drift apart a little, and a pass must not wake one after another).
        if held_until < self._held_until - HELD_MARGIN:
            self.capacity_changed()
        self._held_until = held_until
        decided = {d.session.kernel_id: d for d in result.decisions}
        placed = await queue_rows.assign(
            conn, [(d.session.kernel_id, d.agent_id) for d in decided.values()]
        )
        if placed:
            await record_session_starts(conn, [decided[k].session.access_key for k in placed])
            await queue_rows.notify_queue_changed(conn)
        return placed

    async def dispatch(self) -> list[str]:
        """A pass under the placement lock, if anything waits; the sessions placed."""
        if not await queue_rows.any_waiting(self.db):
            self._held_until = math.inf
            return []
        async with self.db.transaction() as conn:
            await locks.hold(conn, PLACEMENT_LOCK_ID)
            placed = await self.place_waiting(conn, await self.candidates(conn))
        self.announce(placed)
        return placed

    def announce(self, placed: list[str]) -> None:
        """Wake the waiters of the sessions `placed` (once their placement committed)."""
        for kernel_id in placed:
            event = self._waiters.get(kernel_id)
            if event is not None:
                event.set()

    async def _check_waiters(self) -> None:
        """Wake the waiters whose row left PENDING elsewhere (another manager placed it,
        a user destroyed it)."""
        if not self._waiters:
            return
        found = await queue_rows.statuses(self.db, list(self._waiters))
        self.announce([k for k in list(self._waiters) if found.get(k) != "PENDING"])

    # -- the background task --------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._listen)
            task_status.started()
            while True:
                tick = min(self.recheck_interval, max(self._held_until - trio.current_time(), 0))
                with trio.move_on_after(tick):
                    await self._wake.wait()
                self._wake = trio.Event()
                try:
                    await self.dispatch()
                    await self._check_waiters()
                except Exception:
                    log.exception("a placement pass over the pending queue failed")

    async def _listen(self) -> None:
        """Every manager's "the queue may move" wakes a pass here, for as long as the
        manager runs (a lost connection is listened on again)."""
        while True:
            try:
                async with listen(self.db, queue_rows.QUEUE_CHANNEL, buffer=LISTEN_BUFFER) as notes:
                    self.capacity_changed()  # whatever was said while nobody listened
                    while True:
                        with trio.move_on_after(self.recheck_interval) as quiet:
                            await notes.receive()
                            self.capacity_changed()
                        if quiet.cancelled_caught:
                            # asyncpg says nothing when an idle connection dies.
                            await notes.check()
            except Exception as exc:
                log.warning("listening for queue changes failed (%s); again soon", exc)
            await trio.sleep(min(self.recheck_interval, 5.0))

    # -- a create's wait ------------------------------------------------------------------

    async def await_placement(self, session: Session) -> Session:
        """Wait for PENDING `session` to be placed; its PREPARING row. After
        `pending_timeout` it ends (``pending-timeout``) and the create fails with 503;
        a caller that goes away ends it too: nothing stays queued or half-made."""
        try:
            with trio.move_on_after(self.pending_timeout):
                return await self._placed_row(session)
            if await queue_rows.end_pending(self.db, session.id, "pending-timeout"):
                raise errors.InstanceNotAvailable(
                    f"No agent had room for the session within {self.pending_timeout:g} s."
                )
            # Placed in the last moment: it goes ahead.
            return await self._placed_row(session)
        except trio.Cancelled:
            with trio.CancelScope(shield=True), trio.move_on_after(self.db.command_timeout):
                if not await queue_rows.end_pending(self.db, session.id, "creation-cancelled"):
                    # Placed, not yet created: no kernel to destroy, only the row to end.
                    await self.endings.record(session.id, "creation-cancelled")
            raise

    async def _placed_row(self, session: Session) -> Session:
        while True:
            event = self._waiters.setdefault(session.id, trio.Event())
            try:
                row = await queue_rows.by_id(self.db, session.id)
                if row is None or row.status != "PENDING":
                    break
                await event.wait()
            finally:
                self._waiters.pop(session.id, None)
        if row is None or row.status != "PREPARING":
            raise errors.KernelCreationFailed("The session ended while it waited for an agent.")
        return row
