"""A storage plugin registered only here (testlib.memory_storage) serves /folders: the
hook interface is all a third-party backend needs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import attrs
import pytest

from crucible.config import Config, ConfigError, PluginOptions
from crucible.db.pool import Database
from crucible.vfolders.hosts import open_hosts
from testlib import memory_storage
from testlib.server import Harness, open_harness

from .folder_api import create, download, ls, names, parts, upload

pytestmark = pytest.mark.manager_config(
    {
        "storage": {
            "default_host": "mem",
            "hosts": {
                "mem": {"type": "memory", "max_files": 3, "options": {"max_entry_bytes": 64}},
                "local": {"type": "local"},
            },
        }
    }
)


@pytest.fixture
async def memory_manager(manager_config: Config, db: Database) -> AsyncIterator[Harness]:
    # The installed plugins plus the test one, as a sysadmin's extra package would add it.
    async with open_harness(manager_config, db, storage_plugins=(memory_storage,)) as harness:
        yield harness


async def test_unknown_plugin_type_is_a_config_error(manager_config: Config) -> None:
    # Without the test plugin registered, type "memory" names nothing installed.
    with pytest.raises(ConfigError, match=r"storage\.hosts\.mem\.type: no storage plugin 'memory'"):
        async with open_hosts(manager_config):
            pass
    async with open_hosts(manager_config, memory_storage) as hosts:
        assert set(hosts) == {"mem", "local"}


async def test_plugin_options_are_validated_by_the_plugin(manager_config: Config) -> None:
    bad = attrs.evolve(
        manager_config.storage.hosts["mem"], options=PluginOptions({"max_entry_bytes": -1})
    )
    config = attrs.evolve(
        manager_config,
        storage=attrs.evolve(manager_config.storage, hosts={"mem": bad}),
    )
    with pytest.raises(ConfigError, match="max_entry_bytes must be a positive integer"):
        async with open_hosts(config, memory_storage):
            pass


async def test_folders_on_the_memory_host(memory_manager: Harness) -> None:
    client = memory_manager.client
    response = await create(client, "inmem")
    assert response.status_code == 201 and response.json()["host"] == "mem"
    assert (await upload(client, "inmem", {"d/a.txt": b"abc", "b": b"xyz"})).status_code == 201
    assert names(await ls(client, "inmem")) == ["b", "d"]
    assert parts(await download(client, "inmem", ["d/a.txt"])) == [("a.txt", b"abc")]
    assert (await upload(client, "inmem", {"c": b"1"})).status_code == 412  # max_files 3
    info = (await client.get("/folders/inmem")).json()
    assert (info["numFiles"], info["size_bytes"]) == (3, 6)
    # A plugin without QuotaEnforcingHost is reported as holding nothing in sessions.
    assert info["quota_enforced"]["size"] == info["quota_enforced"]["files"] == "api"
    assert "'memory' storage plugin does not enforce" in info["quota_enforced"]["detail"]
    # Not mountable: a clear 400 before any session is made.
    mounted = await client.post(
        "/kernel/create",
        json={"lang": "python", "clientSessionToken": "memtest", "config": {"mounts": ["inmem"]}},
    )
    assert mounted.status_code in (400, 404)
    assert (await client.request("DELETE", "/folders/inmem")).status_code == 204
    # The other host still works side by side.
    assert (await create(client, "ondisk", ["local"])).json()["host"] == "local"
