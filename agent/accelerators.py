"""The agent's accelerators: the plugins of ``agent.accelerators``, their devices, and
which kernel holds what of them.

Loading happens when the agent is put together (`open_accelerators`): a name that is
not installed, or a ``[accelerators.NAME]`` table the plugin refuses, stops the agent
with every problem listed. Discovery happens when it starts (`Accelerators.discover`):
a plugin that raises there is logged and left out, the agent runs on without it.

A kernel's allocation (`KernelAllocation`: plugin → slot → device → amount) is taken
all at once across plugins or not at all, written into the kernel's label
(`crucible.agent.kernel.info`), taken again by a restarted agent (`restore`) and given
back when the kernel is removed (`free`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import attrs
import trio

from crucible.config import Config, ConfigError, plugin_options
from crucible.hookspecs.accelerator import (
    Accelerator,
    Allocation,
    AllocMap,
    ContainerSettings,
    Device,
    DeviceMount,
    DeviceRequest,
    DeviceStats,
    InsufficientDevices,
)
from crucible.plugin_manager import PluginNotFound, load_accelerator_plugins

log = logging.getLogger(__name__)

#: ``{plugin name: {slot: {device id: amount}}}``: what one kernel holds.
KernelAllocation = dict[str, dict[str, dict[str, float]]]
#: The slots every agent has without plugins; a plugin may not claim them.
BUILTIN_SLOTS = frozenset({"cpu", "mem"})


class AllocationRefused(Exception):
    """A kernel's accelerator request cannot be met here; nothing was allocated."""


@attrs.frozen
class _Plugin:
    """A plugin opened on its table, before discovery."""

    name: str
    accelerator: Accelerator


@attrs.frozen
class _LivePlugin:
    """A plugin whose devices were found, and its map of them."""

    name: str
    accelerator: Accelerator
    devices: tuple[Device, ...]
    map: AllocMap


def open_accelerators(config: Config, *extra_plugins: object) -> Accelerators:
    """The plugins ``agent.accelerators`` names, opened on their tables (not yet
    discovered); a `ConfigError` listing every problem (the command reports it against
    the file, as a problem found when it loads). `extra_plugins` are registered beside
    the installed ones (tests)."""
    names = config.agent.accelerators
    if not names:
        return Accelerators([])
    try:
        plugins = load_accelerator_plugins(names, *extra_plugins)
    except PluginNotFound as exc:
        raise ConfigError("configuration", [f"agent.accelerators: {exc}"]) from None
    opened, problems = [], []
    for plugin in plugins:
        section = f"accelerators.{plugin.name}"
        try:
            options = plugin_options(
                section, config.accelerators.get(plugin.name, {}), plugin.options_type
            )
            opened.append(_Plugin(plugin.name, plugin.open(options)))
        except ConfigError as exc:
            problems += exc.problems
        except ValueError as exc:
            problems.append(f"{section}: {exc}")
    if problems:
        raise ConfigError("configuration", problems)
    return Accelerators(opened)


class Accelerators:
    def __init__(self, plugins: list[_Plugin]) -> None:
        self._opened = plugins
        #: The plugins in use (discovered without error), and which serves each slot.
        self._live: list[_LivePlugin] = []
        self._by_slot: dict[str, _LivePlugin] = {}
        #: What each kernel holds: freeing goes by kernel, so it happens once.
        self._held: dict[str, KernelAllocation] = {}

    @property
    def names(self) -> list[str]:
        """The plugins in use (discovered without error)."""
        return [p.name for p in self._live]

    async def discover(self) -> None:
        """Find every plugin's devices (in worker threads); a plugin that fails, or
        claims a slot another has, is logged and dropped."""
        for plugin in self._opened:
            try:
                devices = tuple(await trio.to_thread.run_sync(plugin.accelerator.discover))
                alloc_map = plugin.accelerator.alloc_map(devices)
            except Exception:
                log.exception(
                    "accelerator %s failed to discover its devices; the agent runs without it",
                    plugin.name,
                )
                continue
            taken = set(alloc_map.capacity()) & (BUILTIN_SLOTS | set(self._by_slot))
            if taken:
                log.error(
                    "accelerator %s offers slots already offered (%s); the agent runs without it",
                    plugin.name,
                    ", ".join(sorted(taken)),
                )
                continue
            live = _LivePlugin(plugin.name, plugin.accelerator, devices, alloc_map)
            self._live.append(live)
            for slot in alloc_map.capacity():
                self._by_slot[slot] = live
            log.info(
                "accelerator %s: %d device(s), slots %s",
                plugin.name,
                len(devices),
                alloc_map.capacity(),
            )

    def capacity(self) -> dict[str, float]:
        """Every accelerator slot and its total (zero-device plugins offer nothing)."""
        slots: dict[str, float] = {}
        for plugin in self._live:
            slots.update({k: v for k, v in plugin.map.capacity().items() if v > 0})
        return slots

    def free_slots(self) -> dict[str, float]:
        slots: dict[str, float] = {}
        for plugin in self._live:
            slots.update(plugin.map.free_slots())
        return slots

    def held(self, kernel_id: str) -> KernelAllocation:
        return self._held.get(kernel_id, {})

    def allocate(self, kernel_id: str, requested: Mapping[str, float]) -> KernelAllocation:
        """Take `requested` (accelerator slots only; zero amounts are ignored) across
        the plugins for `kernel_id`, all or nothing; `AllocationRefused` says why."""
        if kernel_id in self._held:
            raise AllocationRefused(f"kernel {kernel_id} holds devices already")
        wanted = {slot: amount for slot, amount in requested.items() if amount}
        unknown = sorted(slot for slot in wanted if slot not in self._by_slot)
        if unknown:
            offered = ", ".join(sorted(self._by_slot)) or "none"
            raise AllocationRefused(
                f"this agent has no {', '.join(unknown)} (accelerator slots: {offered})"
            )
        per_plugin: dict[str, dict[str, float]] = {}
        for slot, amount in wanted.items():
            per_plugin.setdefault(self._by_slot[slot].name, {})[slot] = amount
        taken: KernelAllocation = {}
        try:
            for plugin in self._live:
                if plugin.name in per_plugin:
                    allocation = plugin.map.allocate(per_plugin[plugin.name])
                    taken[plugin.name] = _plain(allocation)
        except (InsufficientDevices, ValueError) as exc:
            self._give_back(taken)
            raise AllocationRefused(str(exc)) from None
        if taken:
            self._held[kernel_id] = taken
        return taken

    def free(self, kernel_id: str) -> None:
        """Give back what `kernel_id` holds; a kernel holding nothing (any more) is fine."""
        self._give_back(self._held.pop(kernel_id, {}))

    def _give_back(self, allocation: KernelAllocation) -> None:
        for plugin in self._live:
            if plugin.name in allocation:
                plugin.map.free(allocation[plugin.name])

    def restore(self, kernel_id: str, allocation: KernelAllocation) -> None:
        """Take a recovered kernel's allocation again (plugins no longer loaded are
        logged: their devices are not the agent's to give any more)."""
        live = {p.name: p for p in self._live}
        if not allocation or kernel_id in self._held:
            return
        self._held[kernel_id] = {n: part for n, part in allocation.items() if n in live}
        for name, part in allocation.items():
            plugin = live.get(name)
            if plugin is None:
                log.warning(
                    "kernel %s holds devices of accelerator %s, not loaded", kernel_id, name
                )
                continue
            plugin.map.restore(part)
            if any(amount < 0 for amount in plugin.map.free_slots().values()):
                log.warning(
                    "kernel %s: accelerator %s is over-allocated after recovery (%s free)",
                    kernel_id,
                    name,
                    plugin.map.free_slots(),
                )

    def container_settings(self, allocation: KernelAllocation) -> ContainerSettings:
        """What a container holding `allocation` gets from every plugin, together."""
        requests: list[DeviceRequest] = []
        environ: dict[str, str] = {}
        mounts: list[DeviceMount] = []
        for plugin in self._live:
            if plugin.name not in allocation:
                continue
            settings = plugin.accelerator.container_settings(
                allocation[plugin.name], plugin.devices
            )
            requests += settings.device_requests
            environ.update(settings.environ)
            mounts += settings.mounts
        return ContainerSettings(tuple(requests), environ, tuple(mounts))

    async def device_stats(self) -> dict[str, list[DeviceStats]]:
        """Every plugin's devices now, by plugin (a plugin that fails reports none)."""
        stats: dict[str, list[DeviceStats]] = {}
        for plugin in self._live:
            try:
                stats[plugin.name] = list(
                    await trio.to_thread.run_sync(plugin.accelerator.device_stats, plugin.devices)
                )
            except Exception:
                log.warning("accelerator %s: no device statistics", plugin.name, exc_info=True)
                stats[plugin.name] = []
        return stats


def _plain(allocation: Allocation) -> dict[str, dict[str, float]]:
    return {slot: {d: float(a) for d, a in devices.items()} for slot, devices in allocation.items()}
