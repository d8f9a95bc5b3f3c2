"""The services a manager's request handlers use, handed to the app factory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
from quart import current_app

from crucible.config import Config
from crucible.db.pool import Database
from crucible.keypairs import KeypairCache, KeypairRepository
from crucible.manager_status import ManagerStatusStore
from crucible.ratelimit import RateLimiter


async def _no_sessions_to_kill() -> int:
    return 0


@attrs.define
class ManagerContext:
    config: Config
    db: Database
    keypairs: KeypairRepository
    keypair_cache: KeypairCache
    rate_limiter: RateLimiter
    status: ManagerStatusStore
    #: Destroys every running session (freeze with ``force_kill``); returns how many.
    #: The session registry installs the real one when it starts.
    destroy_all_sessions: Callable[[], Awaitable[int]] = _no_sessions_to_kill

    @classmethod
    def build(cls, config: Config, db: Database) -> ManagerContext:
        repo = KeypairRepository(db)
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
        )


EXTENSION_KEY = "crucible"


def manager_context() -> ManagerContext:
    ctx: ManagerContext = current_app.extensions[EXTENSION_KEY]
    return ctx
