"""The manager's components: built once, each handed to those that use it, and closed.

`open_manager` is the one place that knows how the manager is put together (in the
manner of Parsec's ``backend_app_factory``): it loads the plugins, opens the storage
hosts for as long as the block lasts, and builds every service exactly once, passing
each explicitly to the services that need it. Nothing builds a component of its own.
The app factory (`crucible.api.app.create_app`) and `ManagerServer` take the result.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from crucible.cluster.directory import AgentDirectory
from crucible.cluster.notices import AgentNotice
from crucible.config import Config
from crucible.db.pool import Database
from crucible.graphql import GraphQLService
from crucible.keypairs import KeypairCache, KeypairRepository
from crucible.manager.status import ManagerStatusStore
from crucible.plugin_manager import load_agent_selector, load_scheduler
from crucible.ratelimit import RateLimiter
from crucible.resource_policies import ResourcePolicyStore
from crucible.sessions.activity import ActivityRecorder
from crucible.sessions.agent_calls import AgentCalls
from crucible.sessions.endings import EndRecorder
from crucible.sessions.event_relay import EventRelay
from crucible.sessions.events import SessionEvents
from crucible.sessions.lifecycle import SessionLifecycle
from crucible.sessions.mounts import SessionMounts
from crucible.sessions.pending import PendingQueue
from crucible.sessions.placement import Placement
from crucible.sessions.reaper import IdleReaper
from crucible.sessions.reconciliation import Reconciler
from crucible.vfolders.hosts import open_hosts
from crucible.vfolders.service import VFolderService


@attrs.frozen
class ManagerComponents:
    """The services one manager process runs on; request handlers reach them through
    `crucible.api.context.manager_context`."""

    config: Config
    db: Database
    #: The secret agents prove they know when they link (see crucible.protocol.auth).
    cluster_secret: str = attrs.field(repr=False)
    status: ManagerStatusStore
    keypairs: KeypairRepository
    keypair_cache: KeypairCache
    rate_limiter: RateLimiter
    policies: ResourcePolicyStore
    agents: AgentDirectory
    vfolders: VFolderService
    #: The session lifecycle the API drives (create, execute, destroy...).
    sessions: SessionLifecycle
    #: Background duties of the sessions, which `ManagerServer` runs: activity
    #: flushes, the reconciliation of agents' reports, the idle reaper, the
    #: pending queue's passes.
    activity: ActivityRecorder
    reconciler: Reconciler
    reaper: IdleReaper
    #: The sessions waiting for room, and the passes that place them.
    queue: PendingQueue
    #: Session events to and from the other managers on the database (spec 5.4).
    event_relay: EventRelay
    #: The admin GraphQL API, over the services above.
    graphql: GraphQLService


@asynccontextmanager
async def open_manager(
    config: Config,
    db: Database,
    *,
    cluster_secret: str,
    storage_plugins: tuple[object, ...] = (),
) -> AsyncIterator[ManagerComponents]:
    """The manager's components on `db`, for the block; its storage hosts close after it.

    `storage_plugins` are registered besides the installed ones (tests use this). A
    bad plugin name or storage host is a `ConfigError`, raised before anything runs.
    """
    scheduler = load_scheduler(config.scheduler.name)
    selector = load_agent_selector(config.scheduler.agent_selector)
    settings = config.sessions
    # The agent directory hands what agents report to the reconciler on this channel.
    notice_send, notice_receive = trio.open_memory_channel[AgentNotice](0)
    async with open_hosts(config, *storage_plugins) as hosts:
        keypairs = KeypairRepository(db)
        keypair_cache = KeypairCache(
            keypairs,
            ttl=config.auth.keypair_cache_ttl,
            flush_interval=config.auth.usage_flush_interval,
        )
        status = ManagerStatusStore(db)
        policies = ResourcePolicyStore(db)
        agents = AgentDirectory(
            db=db,
            notices=notice_send,
            lost_after=settings.agent_lost_after,
            scan_interval=settings.lost_scan_interval,
        )
        vfolders = VFolderService(db, hosts, config.storage.default_host, config.limits)
        events = SessionEvents()
        endings = EndRecorder(db, events)
        calls = AgentCalls(agents, endings, settings)
        activity = ActivityRecorder(db, interval=settings.activity_flush_interval)
        queue = PendingQueue(
            db=db,
            scheduler=scheduler,
            selector=selector,
            agents=agents,
            endings=endings,
            pending_timeout=settings.pending_timeout,
            recheck_interval=settings.pending_recheck_interval,
            head_block_timeout=config.scheduler.head_block_timeout,
        )
        sessions = SessionLifecycle(
            db=db,
            settings=settings,
            placement=Placement(db, policies, queue),
            mounts=SessionMounts(db, vfolders, endings),
            calls=calls,
            endings=endings,
            activity=activity,
            events=events,
        )
        with notice_send, notice_receive:
            yield ManagerComponents(
                config=config,
                db=db,
                cluster_secret=cluster_secret,
                status=status,
                keypairs=keypairs,
                keypair_cache=keypair_cache,
                rate_limiter=RateLimiter(config.ratelimit.window),
                policies=policies,
                agents=agents,
                vfolders=vfolders,
                sessions=sessions,
                activity=activity,
                reconciler=Reconciler(
                    db=db,
                    notices=notice_receive,
                    calls=calls,
                    endings=endings,
                    queue=queue,
                    missing_kernel_grace=settings.missing_kernel_grace,
                ),
                event_relay=EventRelay(
                    db=db,
                    events=events,
                    retry_interval=settings.event_relay_retry_interval,
                    check_interval=settings.event_relay_check_interval,
                    queue=settings.event_relay_queue,
                ),
                reaper=IdleReaper(
                    db=db,
                    sessions=sessions,
                    idle_timeout=settings.idle_timeout,
                    interval=settings.reap_interval,
                ),
                queue=queue,
                graphql=GraphQLService(config, db, keypairs, keypair_cache, status, policies),
            )
