"""Where a new session runs: it joins the pending queue, and a placement pass
(`crucible.sessions.pending`) puts it on the agent the scheduler and the agent selector
choose among those with room, under the keypair's resource policy, all under the
cluster-wide placement lock so that two managers never overbook an agent or a
keypair's concurrency limit. A session no agent could ever hold is refused at once."""

from __future__ import annotations

import attrs

from crucible import errors
from crucible.db.pool import Database
from crucible.db.queries import kernels, locks
from crucible.db.queries import pending as queue_rows
from crucible.keypairs import Keypair
from crucible.resource_policies import ResourcePolicyStore, cap, check_session_quota
from crucible.sessions.model import Session
from crucible.sessions.pending import PLACEMENT_LOCK_ID, PendingQueue
from crucible.sessions.resources import Resources
from crucible.sessions.scheduling import never_fits


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
    #: The keypairs' caps, the same store the admin API changes.
    policies: ResourcePolicyStore
    #: The queue a new session joins, and whose pass places it.
    queue: PendingQueue

    async def place(self, request: SessionRequest) -> tuple[Session, bool]:
        """The keypair's live session of that token (``created`` False), or a new one:
        PREPARING on the agent chosen for it when one has room now, else PENDING."""
        keypair = request.keypair
        async with self.db.transaction() as conn:
            await locks.hold(conn, PLACEMENT_LOCK_ID)
            existing = await kernels.live_session(conn, keypair.access_key, request.token)
            if existing is not None:
                return existing, False
            # The keypair's resource policy caps this session and the keypair's total
            # (its pending sessions count: the queue is no way around a cap).
            policy = await self.policies.for_keypair(conn, keypair.access_key)
            resources = cap(policy, request.resources)
            load = await kernels.keypair_load(conn, keypair.access_key)
            check_session_quota(policy, keypair.concurrency_limit, load, resources)
            agents = await self.queue.candidates(conn)
            why = never_fits(resources.slots(), [a for a in agents if a.offers(request.image)])
            if why is not None:
                raise errors.InstanceNotAvailable(f"The session can never be placed: {why}.")
            session = await queue_rows.insert_pending(
                conn,
                token=request.token,
                access_key=keypair.access_key,
                image=request.image,
                lang=request.lang,
                tag=request.tag,
                environ=request.environ,
                slots=resources.slots(),
            )
            # The new session takes its turn in the scheduler's order, like any other.
            placed = await self.queue.place_waiting(conn, agents)
            current = await queue_rows.by_id(conn, session.id)
        self.queue.announce(placed)
        assert current is not None
        return current, True
