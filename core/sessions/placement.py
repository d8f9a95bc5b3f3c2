"""Where a new session runs: the agent the scheduler picks among those with room, under
the keypair's resource policy, decided under a cluster-wide advisory lock so that two
managers never overbook an agent or a keypair's concurrency limit."""

from __future__ import annotations

from datetime import UTC, datetime

import attrs

from crucible import errors
from crucible.cluster.directory import AgentDirectory
from crucible.db.pool import Database, Executor
from crucible.db.queries import agents as agent_rows
from crucible.db.queries import kernels, locks
from crucible.hookspecs.scheduler import AgentCapacity, PendingSession, Scheduler
from crucible.keypairs import Keypair
from crucible.resource_policies import ResourcePolicyStore, cap, check_session_quota
from crucible.sessions.model import Session
from crucible.sessions.resources import Resources
from crucible.usage import record_session_start

#: pg_advisory_xact_lock key serialising placement decisions cluster-wide.
PLACEMENT_LOCK_ID = 0x43525550  # "CRUP"


@attrs.frozen
class SessionRequest:
    """A new session as the client asked for it, checked and resolved to an image."""

    keypair: Keypair
    token: str
    lang: str
    image: str
    tag: str | None
    environ: dict[str, str]
    resources: Resources


@attrs.frozen
class Placement:
    db: Database
    #: The plugin that picks among the agents with room (``[scheduler] name``).
    scheduler: Scheduler
    #: The keypairs' caps, the same store the admin API changes.
    policies: ResourcePolicyStore
    #: Only agents linked to this manager are candidates: it must talk to them.
    agents: AgentDirectory

    async def place(self, request: SessionRequest) -> tuple[Session, bool]:
        """The keypair's live session of that token (``created`` False), or a new one,
        PREPARING on the agent chosen for it (its start counted in the usage)."""
        keypair = request.keypair
        async with self.db.transaction() as conn:
            await locks.hold(conn, PLACEMENT_LOCK_ID)
            existing = await kernels.live_session(conn, keypair.access_key, request.token)
            if existing is not None:
                return existing, False
            # The keypair's resource policy caps this session and the keypair's total.
            policy = await self.policies.for_keypair(conn, keypair.access_key)
            resources = cap(policy, request.resources)
            load = await kernels.keypair_load(conn, keypair.access_key)
            check_session_quota(
                policy,
                concurrency_limit=keypair.concurrency_limit,
                live=load.sessions,
                used_cpu=load.cpu,
                used_mem=load.mem,
                used_gpu=load.gpu,
                wanted=resources,
            )
            capacities = await self._capacities(conn, request.image)
            pending = PendingSession(
                kernel_id=request.token,
                access_key=keypair.access_key,
                requested=resources.slots(),
                requested_at=datetime.now(UTC),
            )
            choice = self.scheduler.pick_agent(pending, capacities)
            if choice is None:
                raise errors.InstanceNotAvailable(
                    f"No agent has {resources.cpu} free cores and {resources.mem} free bytes"
                    + "".join(f", {v:g} free {k}" for k, v in resources.accelerators.items())
                    + "."
                )
            session = await kernels.insert_session(
                conn,
                token=request.token,
                access_key=keypair.access_key,
                agent_id=choice.agent_id,
                image=request.image,
                lang=request.lang,
                tag=request.tag,
                environ=request.environ,
                slots=resources.slots(),
            )
            await record_session_start(conn, keypair.access_key)
            return session, True

    async def _capacities(self, conn: Executor, image: str) -> list[AgentCapacity]:
        capacities = []
        for agent in await agent_rows.with_status(conn, "ALIVE"):
            if agent.id not in self.agents.links:
                continue  # this manager could not talk to it
            if image not in {i["ref"] for i in agent.images}:
                continue
            capacities.append(
                AgentCapacity(
                    agent_id=agent.id,
                    available={k: float(v) for k, v in agent.available_slots.items()},
                    # Every slot its kernels hold (GPUs too): `fits` checks every slot
                    # the session asks for, and a slot the agent lacks has no room.
                    occupied={**agent.used_slots, "cpu": agent.used_cpu, "mem": agent.used_mem},
                )
            )
        return capacities
