"""The services a manager's request handlers use, handed to the app factory."""

from __future__ import annotations

import attrs
from quart import current_app

from crucible.agents import AgentDirectory
from crucible.config import Config
from crucible.db.pool import Database
from crucible.graphql import GraphQLService
from crucible.keypairs import KeypairCache, KeypairRepository
from crucible.manager_status import ManagerStatusStore
from crucible.plugin_manager import load_scheduler
from crucible.ratelimit import RateLimiter
from crucible.sessions.registry import SessionRegistry
from crucible.vfolders.hosts import open_hosts
from crucible.vfolders.service import VFolderService


@attrs.define
class ManagerContext:
    config: Config
    db: Database
    keypairs: KeypairRepository
    keypair_cache: KeypairCache
    rate_limiter: RateLimiter
    status: ManagerStatusStore
    agents: AgentDirectory
    registry: SessionRegistry
    vfolders: VFolderService
    #: The secret agents prove they know when they link (see crucible.protocol.auth).
    cluster_secret: str = attrs.field(repr=False)
    #: The admin GraphQL API, over the services above.
    graphql: GraphQLService = attrs.field(init=False)

    @graphql.default
    def _graphql(self) -> GraphQLService:
        return GraphQLService(self.config, self.db, self.keypairs, self.keypair_cache, self.status)

    @classmethod
    def build(
        cls,
        config: Config,
        db: Database,
        *,
        cluster_secret: str,
        storage_plugins: tuple[object, ...] = (),
    ) -> ManagerContext:
        """`storage_plugins`: storage plugins registered besides the installed ones."""
        repo = KeypairRepository(db)
        vfolders = VFolderService(
            db,
            open_hosts(config, *storage_plugins),
            config.storage.default_host,
            config.limits,
        )
        agents = AgentDirectory(db, lost_after=config.sessions.agent_lost_after)
        registry = SessionRegistry(config, db, agents, load_scheduler(config.scheduler.name))
        registry.vfolders = vfolders
        return cls(
            config=config,
            db=db,
            keypairs=repo,
            keypair_cache=KeypairCache(
                repo,
                ttl=config.auth.keypair_cache_ttl,
                flush_interval=config.auth.usage_flush_interval,
            ),
            rate_limiter=RateLimiter(config.ratelimit.window),
            status=ManagerStatusStore(db),
            agents=agents,
            registry=registry,
            vfolders=vfolders,
            cluster_secret=cluster_secret,
        )


EXTENSION_KEY = "crucible"


def manager_context() -> ManagerContext:
    ctx: ManagerContext = current_app.extensions[EXTENSION_KEY]
    return ctx
