"""`open_manager`: every component built once and shared; the storage hosts it opened
closed when the block ends, however it ends (issue 10, item 7)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import attrs
import pytest
import trio

from crucible.config import Config, ConfigError
from crucible.db.pool import Database
from crucible.hookspecs.markers import hookimpl
from crucible.hookspecs.storage import HostSettings
from crucible.manager.components import ManagerComponents, open_manager
from testlib.memory_storage import MemoryBackend, MemoryHost
from testlib.server import CLUSTER_SECRET

pytestmark = pytest.mark.manager_config(
    {
        "storage": {
            "default_host": "mem",
            "hosts": {"mem": {"type": "memory"}, "disk": {"type": "local"}},
        }
    }
)


class RecordingMemoryPlugin:
    """The memory storage plugin, keeping every host it opens for the test to look at."""

    def __init__(self) -> None:
        self.hosts: list[MemoryHost] = []

    @hookimpl
    def crucible_storage_backend(self) -> MemoryBackend:
        opened = self.hosts

        class Recording(MemoryBackend):
            def open_host(self, settings: HostSettings) -> MemoryHost:
                host = super().open_host(settings)
                opened.append(host)
                return host

        return Recording()


def _open(
    config: Config, db: Database, plugin: object
) -> AbstractAsyncContextManager[ManagerComponents]:
    return open_manager(config, db, cluster_secret=CLUSTER_SECRET, storage_plugins=(plugin,))


async def test_each_component_is_built_once_and_handed_to_its_users(
    manager_config: Config, db: Database
) -> None:
    async with _open(manager_config, db, RecordingMemoryPlugin()) as parts:
        # One resource-policy store: placement and the admin API see the same policies.
        assert parts.sessions.placement.policies is parts.policies
        assert parts.graphql.policies is parts.policies
        # The session rooms are handed their collaborators; they build none themselves.
        assert parts.sessions.mounts.vfolders is parts.vfolders
        assert parts.sessions.calls.agents is parts.agents
        # One pending queue: placement fills it, the reconciler and the server drive it.
        assert parts.sessions.placement.queue is parts.queue
        assert parts.queue.agents is parts.agents
        assert parts.queue.endings is parts.sessions.endings
        assert parts.reconciler.queue is parts.queue
        assert parts.sessions.activity is parts.activity
        assert parts.reconciler.calls is parts.sessions.calls
        assert parts.reconciler.endings is parts.sessions.endings
        assert parts.sessions.calls.endings is parts.sessions.endings
        assert parts.reaper.sessions is parts.sessions
        assert parts.graphql.keypairs is parts.keypairs
        assert parts.graphql.keypair_cache is parts.keypair_cache
        assert parts.graphql.status is parts.status
        assert parts.keypair_cache.repo is parts.keypairs
        assert set(parts.vfolders.hosts) == {"mem", "disk"}
        assert parts.agents.scan_interval == manager_config.sessions.lost_scan_interval
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            parts.sessions = None  # type: ignore[misc, assignment]


async def test_storage_hosts_close_when_the_block_ends(
    manager_config: Config, db: Database
) -> None:
    plugin = RecordingMemoryPlugin()
    async with _open(manager_config, db, plugin) as parts:
        (host,) = plugin.hosts
        assert parts.vfolders.hosts["mem"].backend is host
        assert not host.closed
    assert host.closed


async def test_storage_hosts_close_when_the_manager_fails(
    manager_config: Config, db: Database
) -> None:
    plugin = RecordingMemoryPlugin()
    with pytest.raises(RuntimeError, match="the manager failed"):
        async with _open(manager_config, db, plugin):
            raise RuntimeError("the manager failed")
    assert [host.closed for host in plugin.hosts] == [True]

    # Cancelled (Ctrl-C twice): closed all the same, shielded from the cancellation.
    plugin = RecordingMemoryPlugin()
    with trio.move_on_after(0.01):
        async with _open(manager_config, db, plugin):
            await trio.sleep_forever()
    assert [host.closed for host in plugin.hosts] == [True]


async def test_hosts_opened_before_a_bad_one_are_closed(
    manager_config: Config, db: Database
) -> None:
    hosts = dict(manager_config.storage.hosts)
    hosts["zzz"] = attrs.evolve(hosts["disk"], type="no-such-plugin")
    config = attrs.evolve(
        manager_config, storage=attrs.evolve(manager_config.storage, hosts=hosts)
    )
    plugin = RecordingMemoryPlugin()
    with pytest.raises(ConfigError, match=r"storage\.hosts\.zzz\.type: no storage plugin"):
        async with _open(config, db, plugin):
            pytest.fail("a manager with a bad storage host must not start")
    assert [host.closed for host in plugin.hosts] == [True]
