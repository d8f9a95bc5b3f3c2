"""Building plugin managers: never at import time, always through entry points.

Built-in plugins register through the same entry-point groups as third-party ones
(see ``[project.entry-points]`` in pyproject.toml).
"""

from __future__ import annotations

from types import ModuleType

import pluggy

from crucible.hookspecs import scheduler as scheduler_spec
from crucible.hookspecs import storage as storage_spec
from crucible.hookspecs.markers import PROJECT_NAME

#: Entry-point group per plugin kind, and the hookspec module that defines the kind.
PLUGIN_KINDS: dict[str, tuple[str, ModuleType]] = {
    "scheduler": ("crucible.schedulers", scheduler_spec),
    "agent_selector": ("crucible.agent_selectors", scheduler_spec),
    "storage": ("crucible.storage", storage_spec),
}


class PluginNotFound(LookupError):
    pass


def create_plugin_manager(kind: str, *extra_plugins: object) -> pluggy.PluginManager:
    """A plugin manager for one plugin kind, with its entry points loaded.

    `extra_plugins` are registered too (tests use this for plugins that are not
    installed). `check_pending()` makes a misspelt hook implementation fail loudly.
    """
    group, spec_module = PLUGIN_KINDS[kind]
    manager = pluggy.PluginManager(PROJECT_NAME)
    manager.add_hookspecs(spec_module)
    manager.load_setuptools_entrypoints(group)
    for plugin in extra_plugins:
        manager.register(plugin)
    manager.check_pending()
    return manager


def load_scheduler(name: str, *extra_plugins: object) -> scheduler_spec.Scheduler:
    manager = create_plugin_manager("scheduler", *extra_plugins)
    schedulers: dict[str, scheduler_spec.Scheduler] = {
        s.name: s for s in manager.hook.crucible_scheduler()
    }
    try:
        return schedulers[name]
    except KeyError:
        known = ", ".join(sorted(schedulers)) or "none"
        raise PluginNotFound(f"no scheduler plugin named {name!r} (installed: {known})") from None


def load_agent_selector(name: str, *extra_plugins: object) -> scheduler_spec.AgentSelector:
    manager = create_plugin_manager("agent_selector", *extra_plugins)
    selectors: dict[str, scheduler_spec.AgentSelector] = {
        s.name: s for offered in manager.hook.crucible_agent_selectors() for s in offered
    }
    try:
        return selectors[name]
    except KeyError:
        known = ", ".join(sorted(selectors)) or "none"
        raise PluginNotFound(f"no agent selector named {name!r} (installed: {known})") from None


def load_storage_backends(*extra_plugins: object) -> dict[str, storage_spec.StorageBackend]:
    """Every installed storage backend, by its ``type`` name."""
    manager = create_plugin_manager("storage", *extra_plugins)
    return {b.type: b for b in manager.hook.crucible_storage_backend()}
