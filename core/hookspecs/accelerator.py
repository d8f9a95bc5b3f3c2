"""Accelerator plugins: the devices of an agent host (GPUs...) as resource slots.

Entry-point group ``crucible.accelerators``. An agent loads the plugins named in
``agent.accelerators``; each reads its own table ``[accelerators.NAME]``. A plugin
module implements one hook, `crucible_accelerator`, returning an `AcceleratorPlugin`:
a name, the attrs class its table is structured into (strictly, as the rest of the
configuration: unknown keys and bad values are all reported when the agent starts) and
`open`, which makes the agent's `Accelerator` from those options.

The agent drives an `Accelerator` like this:

1. `discover` once at start-up (blocking: the agent runs it in a worker thread). What it
   raises is logged and the agent runs on without the plugin.
2. `alloc_map` over the devices found: the `AllocMap` keeps which device holds how
   much of which slot. Its `capacity` joins the agent's heartbeat (``cpu``, ``mem``
   and e.g. ``cuda.device: 2``); the manager places sessions against it.
3. For each new kernel that asks for one of the plugin's slots: `AllocMap.allocate`
   (all or nothing: `InsufficientDevices` leaves the map as it was), then
   `container_settings` turns the allocation into plain data (Docker device requests,
   environment variables, read-only bind mounts) that the agent's Docker driver applies.
4. The allocation is written into the container's labels; a restarted agent hands it
   back with `AllocMap.restore`. A destroyed kernel's allocation goes back with
   `AllocMap.free`.
5. `device_stats` (blocking, in a worker thread) every heartbeat interval; a kernel's
   figures are those of the devices it holds (`kernel_device_stats`).

Amounts are floats on the wire (slot name → amount), but maps count in whole
`QUANTUM` steps (integers) so that a hundred sessions taking 0.01 of a device each
add up to exactly one device.

Example (``plugins/accelerators/mock.py`` is a complete one)::

    from crucible.hookspecs.markers import hookimpl
    from crucible.hookspecs.accelerator import ContainerSettings, Device
    from crucible.plugins.accelerators.alloc_map import DiscreteAllocMap

    @attrs.frozen
    class TPUOptions:
        chips: int = 1

    class TPU:
        name = "tpu"
        options_type = TPUOptions

        def open(self, options):
            return TPUAccelerator(options)

    class TPUAccelerator:
        slot_names = ("tpu.device",)

        def discover(self):
            return [Device(id=str(i), model="TPU", memory_bytes=0) for i in ...]

        def alloc_map(self, devices):
            return DiscreteAllocMap("tpu.device", devices)

        def container_settings(self, allocation, devices):
            return ContainerSettings(environ={"TPU_VISIBLE_CHIPS": ...})

        def device_stats(self, devices):
            return []

    @hookimpl
    def crucible_accelerator():
        return TPU()

registered under ``crucible.accelerators`` in the plugin's pyproject.toml (see
`crucible.hookspecs`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol, runtime_checkable

import attrs

from crucible.hookspecs.markers import hookspec

#: The smallest amount of a fractional slot: maps count in integer steps of it.
QUANTUM: Final = 0.01
#: Steps of `QUANTUM` in one whole unit.
STEPS_PER_UNIT: Final = 100

#: Which device holds how much of which slot: ``{slot name: {device id: amount}}``,
#: e.g. ``{"cuda.shares": {"0": 0.5}}``. Plain data: it goes into container labels.
Allocation = Mapping[str, Mapping[str, float]]


def to_steps(amount: float) -> int:
    """`amount` in whole `QUANTUM` steps (rounded: 0.29 is 29 steps, not 28)."""
    return round(amount * STEPS_PER_UNIT)


def from_steps(steps: int) -> float:
    return steps / STEPS_PER_UNIT


def is_whole_steps(amount: float) -> bool:
    """Whether `amount` is a whole number of `QUANTUM` steps (0.5 yes, 0.001 no)."""
    return abs(amount * STEPS_PER_UNIT - to_steps(amount)) < 1e-6


class InsufficientDevices(Exception):
    """`AllocMap.allocate` cannot give what is asked; nothing was allocated. The message
    says what was asked and what is free, for the operator and the client."""


@attrs.frozen
class Device:
    """One device a plugin found on the host."""

    #: The id the plugin allocates by, unique within the plugin (an index, a UUID).
    id: str
    #: What it is, for people ("NVIDIA H100 80GB HBM3", "mock CUDA device").
    model: str
    #: Its memory, bytes (0 when it has none of its own).
    memory_bytes: int
    #: Anything else the plugin needs later (``container_settings``, stats), e.g. an index.
    extra: Mapping[str, str] = attrs.Factory(dict)


@attrs.frozen
class DeviceRequest:
    """A Docker device request (``HostConfig.DeviceRequests``, ``docker run --gpus``)."""

    driver: str
    device_ids: tuple[str, ...]
    #: Alternatives, each a set of capabilities the driver must offer: ``(("gpu",),)``.
    capabilities: tuple[tuple[str, ...], ...]


@attrs.frozen
class DeviceMount:
    """A host path the container gets read-only (a driver library, a device node)."""

    host_path: str
    container_path: str


@attrs.frozen
class ContainerSettings:
    """What a kernel's container gets for its allocation, as plain data: the agent's
    Docker driver applies it (`crucible.agent.docker`), no plugin talks to Docker."""

    device_requests: tuple[DeviceRequest, ...] = ()
    environ: Mapping[str, str] = attrs.Factory(dict)
    mounts: tuple[DeviceMount, ...] = ()


@attrs.frozen
class DeviceStats:
    """One device now. Figures a device cannot tell are None."""

    device_id: str
    mem_total_bytes: int
    mem_used_bytes: int | None = None
    #: Percent of time the device was busy over the last sample period.
    utilization_pct: float | None = None


@runtime_checkable
class AllocMap(Protocol):
    """Which of a plugin's devices hold how much of its slots, in `QUANTUM` steps.

    ``plugins/accelerators/alloc_map.py`` has two: whole devices (``*.device``) and
    shares of devices (``*.shares``); a plugin normally returns one of them."""

    def capacity(self) -> dict[str, float]:
        """Every slot of the plugin and its total amount (what the heartbeat offers)."""

    def free_slots(self) -> dict[str, float]:
        """Every slot and the amount not allocated now."""

    def allocate(self, requested: Mapping[str, float]) -> Allocation:
        """Take `requested` (its own slots only; amounts > 0); all of it or nothing:
        `InsufficientDevices` when it does not fit, `ValueError` for an amount the slot
        cannot take (a fraction of a whole device, less than a `QUANTUM`)."""

    def free(self, allocation: Allocation) -> None:
        """Give `allocation` back (an unknown device or slot in it is ignored)."""

    def restore(self, allocation: Allocation) -> None:
        """Take `allocation` again, as a restarted agent found it in a container's
        labels. It was valid when it was made, so it is taken even where it no longer
        fits (fewer devices configured): free amounts may then go below zero, and new
        allocations wait until enough is freed."""


@runtime_checkable
class Accelerator(Protocol):
    """One plugin's devices on this agent, as the agent drives them (steps above)."""

    @property
    def slot_names(self) -> tuple[str, ...]:
        """The slots this plugin can offer, e.g. ``("cuda.device",)`` (a plain attribute
        will do): a kernel's request is routed to the plugin by them, so two plugins of
        one agent never share a name."""

    def discover(self) -> Sequence[Device]:
        """The devices on this host (none is an answer, not an error). Blocking."""

    def alloc_map(self, devices: Sequence[Device]) -> AllocMap:
        """An empty map over `devices`."""

    def container_settings(
        self, allocation: Allocation, devices: Sequence[Device]
    ) -> ContainerSettings:
        """What a container holding `allocation` gets (`devices`: all discovered)."""

    def device_stats(self, devices: Sequence[Device]) -> Sequence[DeviceStats]:
        """Each device's figures now. Blocking."""


@runtime_checkable
class AcceleratorPlugin(Protocol):
    #: The name a sysadmin writes in ``agent.accelerators`` and ``[accelerators.NAME]``.
    name: str
    #: The frozen attrs class ``[accelerators.NAME]`` is structured into (every field with
    #: a default: a plugin named without a table gets the defaults).
    options_type: type[Any]

    def open(self, options: Any) -> Accelerator:
        """This agent's accelerator, from an `options_type` instance. Raise `ValueError`
        with a readable message for options that do not go together."""


def kernel_device_stats(allocation: Allocation, stats: Sequence[DeviceStats]) -> list[DeviceStats]:
    """The figures of the devices `allocation` holds (a shared device reports whole)."""
    held = {device for devices in allocation.values() for device in devices}
    return [s for s in stats if s.device_id in held]


@hookspec
def crucible_accelerator() -> AcceleratorPlugin:  # type: ignore[empty-body]
    """Return an accelerator plugin object. Called once when the agent starts."""
