"""The manager service: the API app served by Hypercorn's trio worker."""

from __future__ import annotations

import functools
import logging
from urllib.parse import urlsplit

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from crucible.api.app import create_app
from crucible.config import Config, ConfigError
from crucible.exc_groups import describe
from crucible.manager.components import ManagerComponents
from crucible.manager.status import ManagerStatus

log = logging.getLogger(__name__)

#: Hypercorn's cap on a request's header block; large enough that our own checks of
#: individual header values (which answer with problem+json) see them first.
MAX_HEADER_BLOCK_BYTES = 64 * 1024


def hypercorn_config(config: Config, *, bind: str | None = None) -> HypercornConfig:
    hconfig = HypercornConfig()
    hconfig.bind = [bind or config.manager.bind]
    hconfig.graceful_timeout = config.manager.shutdown_timeout
    hconfig.h11_max_incomplete_size = MAX_HEADER_BLOCK_BYTES
    hconfig.accesslog = None
    hconfig.include_server_header = False
    hconfig.errorlog = logging.getLogger("hypercorn.error")
    hconfig.keep_alive_timeout = config.manager.keep_alive_timeout
    return hconfig


@attrs.frozen
class Endpoint:
    """Where a started manager listens, as a client should address it."""

    url: str

    @classmethod
    def from_bind(cls, bound: str) -> Endpoint:
        # A wildcard address is not something a client can connect to.
        url = bound.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:")
        return cls(url)


class ManagerServer:
    """Serves the API over `components` until `stop()` is called (graceful) or it is
    cancelled; `run` again after a failure serves the same components again."""

    def __init__(self, components: ManagerComponents) -> None:
        self.components = components
        self.config = components.config
        self.app = create_app(components)
        self._shutdown = trio.Event()
        #: The address the first run bound (port 0 resolved): a restart binds it again,
        #: so clients and the local agent find the manager where it was.
        self._bound: str | None = None

    def stop(self) -> None:
        """Begin a graceful stop: refuse new work, finish open requests, return."""
        self.components.status.local = ManagerStatus.TERMINATED
        self._shutdown.set()

    async def _sweep_rate_limits(self) -> None:
        while True:
            await trio.sleep(self.config.ratelimit.sweep_interval)
            self.components.rate_limiter.sweep()

    async def run(
        self, *, task_status: trio.TaskStatus[Endpoint] = trio.TASK_STATUS_IGNORED
    ) -> None:
        parts = self.components
        # Policies named in TOML are the ones keypairs may be created with from now on.
        await parts.policies.sync_from_config(self.config.resource_policies)
        async with trio.open_nursery() as background:
            await background.start(parts.keypair_cache.run)
            await background.start(parts.activity.run)
            await background.start(parts.reconciler.run)
            await background.start(parts.agents.run_lost_detector)
            await background.start(parts.reaper.run)
            await background.start(parts.queue.run)
            await background.start(parts.event_relay.run)
            await background.start(
                parts.vfolders.run_usage_recorder, self.config.storage.usage_record_interval
            )
            background.start_soon(self._sweep_rate_limits)
            background.start_soon(parts.vfolders.enforce_quotas)
            async with trio.open_nursery() as http:
                bind = self._bound or self.config.manager.bind
                try:
                    bound: list[str] = await http.start(
                        functools.partial(
                            serve,
                            self.app,
                            hypercorn_config(self.config, bind=bind),
                            shutdown_trigger=self._shutdown.wait,
                        )
                    )
                except* OSError as group:
                    # Before it started, an OSError is the bind: the address is taken,
                    # or not this host's. The operator's to fix, said as a setting.
                    raise ConfigError(
                        "<manager>",
                        [f"manager.bind: cannot listen on {bind} ({describe(group)})"],
                    ) from None
                self._bound = self._bound or urlsplit(bound[0]).netloc
                parts.status.local = None
                endpoint = Endpoint.from_bind(bound[0])
                log.info("manager listening on %s", endpoint.url)
                task_status.started(endpoint)
            background.cancel_scope.cancel()
