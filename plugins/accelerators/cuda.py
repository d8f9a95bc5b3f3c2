"""NVIDIA GPUs through NVML (``pip install crucible[cuda]``: pynvml), passed to kernels
with Docker device requests (the NVIDIA container runtime).

``[accelerators.cuda]``: ``mode = "discrete"`` offers whole GPUs (``cuda.device``),
``"fractional"`` offers ``cuda.shares`` (several sessions on one GPU: the shares are
bookkeeping, the GPU is not partitioned; its memory is shared as CUDA shares it).

A container gets ``DeviceRequests: [{Driver: "nvidia", DeviceIDs: [its GPUs' UUIDs],
Capabilities: [["gpu"]]}]``: the runtime exposes only those GPUs, numbered from 0 inside
it, so ``CUDA_VISIBLE_DEVICES`` is ``0..n-1`` there (``NVIDIA_VISIBLE_DEVICES``, set by
the runtime, names the UUIDs).

NVML is used as documented and no further: ``nvmlInit``, ``nvmlDeviceGetCount``,
``nvmlDeviceGetHandleByIndex``, ``nvmlDeviceGetUUID``, ``nvmlDeviceGetName``,
``nvmlDeviceGetMemoryInfo``, ``nvmlDeviceGetUtilizationRates``, ``nvmlShutdown``; every
session of calls is one ``nvmlInit`` ... ``nvmlShutdown`` pair (NVML counts them). A
host without pynvml or without the NVIDIA driver reports no devices, and says why once.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

import attrs

from crucible.hookspecs.accelerator import (
    AcceleratorPlugin,
    Allocation,
    ContainerSettings,
    Device,
    DeviceRequest,
    DeviceStats,
)
from crucible.hookspecs.markers import hookimpl
from crucible.plugins.accelerators.alloc_map import ModalSlots

log = logging.getLogger(__name__)

DEVICE_SLOT = "cuda.device"
SHARES_SLOT = "cuda.shares"
T = TypeVar("T")


@attrs.frozen
class CudaOptions:
    #: ``discrete``: whole GPUs (``cuda.device``); ``fractional``: ``cuda.shares``.
    mode: Literal["discrete", "fractional"] = "discrete"


def _import_nvml() -> Any:
    return importlib.import_module("pynvml")


class CudaPlugin:
    name = "cuda"
    options_type = CudaOptions

    def __init__(self, load_nvml: Callable[[], Any] = _import_nvml) -> None:
        #: The plugin boundary: tests hand in a fake NVML module here.
        self._load_nvml = load_nvml

    def open(self, options: CudaOptions) -> CudaAccelerator:
        return CudaAccelerator(options, self._load_nvml)


def _text(value: Any) -> str:
    # Older pynvml releases answer bytes, newer ones str.
    return value.decode() if isinstance(value, bytes) else str(value)


class CudaAccelerator(ModalSlots):
    def __init__(self, options: CudaOptions, load_nvml: Callable[[], Any]) -> None:
        self.options = options
        super().__init__(options.mode, device_slot=DEVICE_SLOT, shares_slot=SHARES_SLOT)
        self._load_nvml = load_nvml
        self._nvml: Any = None

    def _module(self) -> Any | None:
        """The NVML module, or None (logged once) when this host cannot have it."""
        if self._nvml is None:
            try:
                self._nvml = self._load_nvml()
            except ImportError:
                log.info("cuda: pynvml is not installed (crucible[cuda]); no GPUs offered")
                self._nvml = False
        return self._nvml or None

    @contextmanager
    def _session(self, nvml: Any) -> Iterator[None]:
        nvml.nvmlInit()
        try:
            yield
        finally:
            nvml.nvmlShutdown()

    def _each_device(self, nvml: Any, read: Callable[[Any, int], T]) -> list[T]:
        with self._session(nvml):
            return [
                read(nvml.nvmlDeviceGetHandleByIndex(index), index)
                for index in range(nvml.nvmlDeviceGetCount())
            ]

    def discover(self) -> list[Device]:
        nvml = self._module()
        if nvml is None:
            return []

        def describe(handle: Any, index: int) -> Device:
            return Device(
                id=_text(nvml.nvmlDeviceGetUUID(handle)),
                model=_text(nvml.nvmlDeviceGetName(handle)),
                memory_bytes=int(nvml.nvmlDeviceGetMemoryInfo(handle).total),
                extra={"index": str(index)},
            )

        try:
            devices = self._each_device(nvml, describe)
        except nvml.NVMLError as exc:
            # No driver (NVML_ERROR_LIBRARY_NOT_FOUND, DRIVER_NOT_LOADED...): no GPUs here.
            log.info("cuda: NVML is not usable on this host (%s); no GPUs offered", exc)
            return []
        for device in devices:
            log.info("cuda: GPU %s: %s, %d MiB", device.id, device.model, device.memory_bytes >> 20)
        return devices

    def container_settings(
        self, allocation: Allocation, devices: Sequence[Device]
    ) -> ContainerSettings:
        held = set(allocation.get(self.slot_name, {}))
        # Host order, so that the container's device 0 is the lowest-numbered GPU held.
        uuids = tuple(device.id for device in devices if device.id in held)
        if not uuids:
            return ContainerSettings()
        return ContainerSettings(
            device_requests=(
                DeviceRequest(driver="nvidia", device_ids=uuids, capabilities=(("gpu",),)),
            ),
            environ={
                "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(len(uuids))),
                # The runtime mounts what compute work needs (and nvidia-smi).
                "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
            },
        )

    def device_stats(self, devices: Sequence[Device]) -> list[DeviceStats]:
        nvml = self._module()
        if nvml is None or not devices:
            return []

        def sample(handle: Any, _: int) -> DeviceStats:
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            rates = nvml.nvmlDeviceGetUtilizationRates(handle)
            return DeviceStats(
                device_id=_text(nvml.nvmlDeviceGetUUID(handle)),
                mem_total_bytes=int(memory.total),
                mem_used_bytes=int(memory.used),
                utilization_pct=float(rates.gpu),
            )

        try:
            return self._each_device(nvml, sample)
        except nvml.NVMLError as exc:
            log.warning("cuda: could not read GPU statistics: %s", exc)
            return []


@hookimpl
def crucible_accelerator() -> AcceleratorPlugin:
    # Annotated with the Protocol, so that mypy checks the plugin against the hookspec.
    return CudaPlugin()
