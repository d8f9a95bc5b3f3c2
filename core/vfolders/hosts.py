"""Opening the configured vfolder hosts through their storage plugins, and closing them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import attrs
import trio

from crucible.config import Config, ConfigError, StorageHostConfig
from crucible.hookspecs.storage import (
    ClosableHost,
    HostSettings,
    QuotaEnforcement,
    QuotaEnforcingHost,
    VFolderHost,
)
from crucible.plugin_manager import load_storage_backends

log = logging.getLogger(__name__)


@attrs.frozen
class StorageHost:
    """A configured host: its plugin object and the quotas of its folders."""

    name: str
    config: StorageHostConfig
    backend: VFolderHost

    @property
    def quota_enforcement(self) -> QuotaEnforcement:
        """What new folders of this host get (see `QuotaEnforcingHost`)."""
        if isinstance(self.backend, QuotaEnforcingHost):
            return self.backend.quota_enforcement
        return QuotaEnforcement.api_only(
            f"the {self.config.type!r} storage plugin does not enforce quotas itself"
        )


def announce_enforcement(host: StorageHost) -> None:
    """Say at start-up what a host's folders can and cannot exceed from inside sessions."""
    enforcement = host.quota_enforcement
    if enforcement.in_sessions:
        log.info("storage host %r: %s", host.name, enforcement.summary())
    else:
        # A session can fill the disk past a folder's cap here: operators must know.
        log.warning("storage host %r: %s", host.name, enforcement.summary())


def default_local_path(config: Config) -> str:
    return str(config.state_path / "vfolders")


@asynccontextmanager
async def open_hosts(
    config: Config, *extra_plugins: object
) -> AsyncIterator[dict[str, StorageHost]]:
    """Every ``[storage.hosts.NAME]``, opened for the block and closed after it (those
    that are a `ClosableHost`); `ConfigError` lists every host that fails to open.

    `extra_plugins` are registered besides the installed ones (tests use this).
    """
    hosts: dict[str, StorageHost] = {}
    try:
        problems = _open_each(config, extra_plugins, hosts)
        if problems:
            raise ConfigError("<storage>", problems)
        for host in hosts.values():
            announce_enforcement(host)
        yield hosts
    finally:
        with trio.CancelScope(shield=True):
            await close_hosts(hosts.values(), timeout=config.manager.shutdown_timeout)


async def close_hosts(hosts: Iterable[StorageHost], *, timeout: float) -> None:
    """`aclose` each host that holds resources; a failure is logged, the rest still close."""
    for host in hosts:
        if not isinstance(host.backend, ClosableHost):
            continue
        try:
            with trio.fail_after(timeout):
                await host.backend.aclose()
        except Exception:
            log.exception("closing storage host %r failed", host.name)


def _open_each(
    config: Config, extra_plugins: tuple[object, ...], hosts: dict[str, StorageHost]
) -> list[str]:
    """Open every host into `hosts` (so that what opened is closed even when another
    fails); return the problems."""
    backends = load_storage_backends(*extra_plugins)
    problems: list[str] = []
    for name, host_config in sorted(config.storage.hosts.items()):
        backend = backends.get(host_config.type)
        if backend is None:
            known = ", ".join(sorted(backends)) or "none"
            problems.append(
                f"storage.hosts.{name}.type: no storage plugin {host_config.type!r} "
                f"(installed: {known})"
            )
            continue
        path = host_config.path
        if not path and host_config.type == "local":
            path = default_local_path(config)
        settings = HostSettings(
            name=name,
            type=host_config.type,
            path=path,
            options=dict(host_config.options),
            state_dir=str(config.state_path),
        )
        try:
            hosts[name] = StorageHost(name, host_config, backend.open_host(settings))
        except ValueError as exc:
            problems.append(f"storage.hosts.{name}: {exc}")
    return problems
