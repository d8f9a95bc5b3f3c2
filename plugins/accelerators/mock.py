"""Fake CUDA-like devices, for tests and demos on hosts without GPUs.

``[accelerators.mock]``: ``devices`` (how many), ``memory`` (each one's, e.g.
``"16GiB"``), ``mode``: ``"discrete"`` offers whole devices as ``cuda.device``,
``"fractional"`` offers ``cuda.shares`` (steps of 0.01 of a device, several sessions on
one device). Nothing reaches the container but environment variables, so code in a
session sees what it was given:

* ``CUDA_VISIBLE_DEVICES``: the ids of its devices, comma-separated (``"0,1"``);
* ``MOCK_ACCELERATOR_SHARES``: each device's share, ``"0:0.5,1:1"``;
* ``MOCK_ACCELERATOR_MEMORY``: the memory its shares amount to in bytes, in all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import attrs

from crucible.config.types import ByteSize, GiB, NonNegativeInt
from crucible.hookspecs.accelerator import (
    AcceleratorPlugin,
    Allocation,
    ContainerSettings,
    Device,
    DeviceStats,
)
from crucible.hookspecs.markers import hookimpl
from crucible.plugins.accelerators.alloc_map import ModalSlots

# The CUDA plugin's slots: sessions written against the mock run unchanged on real GPUs.
from crucible.plugins.accelerators.cuda import DEVICE_SLOT, SHARES_SLOT


@attrs.frozen
class MockOptions:
    #: How many fake devices the host has.
    devices: NonNegativeInt = NonNegativeInt(1)
    #: Memory of each device.
    memory: ByteSize = ByteSize(16 * GiB)
    #: ``discrete``: whole devices (``cuda.device``); ``fractional``: ``cuda.shares``.
    mode: Literal["discrete", "fractional"] = "discrete"


class MockPlugin:
    name = "mock"
    options_type = MockOptions

    def open(self, options: MockOptions) -> MockAccelerator:
        return MockAccelerator(options)


class MockAccelerator(ModalSlots):
    def __init__(self, options: MockOptions) -> None:
        self.options = options
        super().__init__(options.mode, device_slot=DEVICE_SLOT, shares_slot=SHARES_SLOT)

    def discover(self) -> list[Device]:
        return [
            Device(id=str(index), model="mock CUDA device", memory_bytes=self.options.memory)
            for index in range(self.options.devices)
        ]

    def container_settings(
        self, allocation: Allocation, devices: Sequence[Device]
    ) -> ContainerSettings:
        shares = dict(allocation.get(self.slot_name, {}))
        memory = {device.id: device.memory_bytes for device in devices}
        held = sorted(shares, key=_device_order)
        return ContainerSettings(
            environ={
                "CUDA_VISIBLE_DEVICES": ",".join(held),
                "MOCK_ACCELERATOR_SHARES": ",".join(f"{d}:{shares[d]:g}" for d in held),
                "MOCK_ACCELERATOR_MEMORY": str(
                    sum(round(memory.get(d, 0) * shares[d]) for d in held)
                ),
            }
        )

    def device_stats(self, devices: Sequence[Device]) -> list[DeviceStats]:
        # Fake devices do no work: idle, nothing used.
        return [
            DeviceStats(d.id, mem_total_bytes=d.memory_bytes, mem_used_bytes=0, utilization_pct=0.0)
            for d in devices
        ]


def _device_order(device_id: str) -> tuple[int, str]:
    return (int(device_id), "") if device_id.isdigit() else (1 << 30, device_id)


@hookimpl
def crucible_accelerator() -> AcceleratorPlugin:
    # Annotated with the Protocol, so that mypy checks the plugin against the hookspec.
    return MockPlugin()
