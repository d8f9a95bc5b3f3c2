"""The CUDA plugin against a fake NVML module, handed in at the plugin boundary.

The fake keeps NVML's documented shape: ``nvmlInit``/``nvmlShutdown`` pair up, handles
come from ``nvmlDeviceGetHandleByIndex``, memory info has ``total``/``used``/``free``,
utilisation ``gpu``/``memory``, errors are ``NVMLError``; it refuses any call outside
an init/shutdown pair, as the real library does.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from crucible.agent.docker.driver import _device_requests
from crucible.agent.docker.specs import ContainerSpec
from crucible.hookspecs.accelerator import DeviceRequest, DeviceStats
from crucible.plugins.accelerators.cuda import CudaAccelerator, CudaOptions, CudaPlugin


class NVMLError(Exception):
    pass


class FakeNVML:
    NVMLError = NVMLError

    def __init__(self, gpus: list[dict[str, Any]], *, init_error: bool = False) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.depth = 0
        self.calls: list[str] = []

    def _live(self, name: str) -> None:
        self.calls.append(name)
        if self.depth <= 0:
            raise NVMLError("Uninitialized")

    def nvmlInit(self) -> None:
        self.calls.append("nvmlInit")
        if self.init_error:
            raise NVMLError("NVML Shared Library Not Found")
        self.depth += 1

    def nvmlShutdown(self) -> None:
        self._live("nvmlShutdown")
        self.depth -= 1

    def nvmlDeviceGetCount(self) -> int:
        self._live("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._live("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError("Invalid Argument")
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> bytes:
        self._live("nvmlDeviceGetUUID")
        return str(self.gpus[handle]["uuid"]).encode()  # older pynvml: bytes

    def nvmlDeviceGetName(self, handle: int) -> str:
        self._live("nvmlDeviceGetName")
        return str(self.gpus[handle]["name"])

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        self._live("nvmlDeviceGetMemoryInfo")
        gpu = self.gpus[handle]
        return SimpleNamespace(
            total=gpu["total"], used=gpu["used"], free=gpu["total"] - gpu["used"]
        )

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        self._live("nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=self.gpus[handle]["util"], memory=5)


GPUS = [
    {"uuid": "GPU-aaaa", "name": "NVIDIA H200", "total": 141 << 30, "used": 1 << 30, "util": 40},
    {"uuid": "GPU-bbbb", "name": "NVIDIA H200", "total": 141 << 30, "used": 0, "util": 0},
]


def _cuda(nvml: Any, mode: str = "discrete") -> CudaAccelerator:
    return CudaPlugin(lambda: nvml).open(CudaOptions(mode=mode))  # type: ignore[arg-type]


def test_without_pynvml_it_offers_nothing_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def missing() -> Any:
        raise ModuleNotFoundError("No module named 'pynvml'")

    cuda = CudaPlugin(missing).open(CudaOptions())
    with caplog.at_level(logging.INFO, "crucible.plugins.accelerators.cuda"):
        assert cuda.discover() == []
        assert cuda.device_stats([]) == []
        assert cuda.discover() == []
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["cuda: pynvml is not installed (crucible[cuda]); no GPUs offered"]
    assert cuda.alloc_map([]).capacity() == {"cuda.device": 0.0}


def test_without_the_driver_it_offers_nothing(caplog: pytest.LogCaptureFixture) -> None:
    nvml = FakeNVML(GPUS, init_error=True)
    with caplog.at_level(logging.INFO, "crucible.plugins.accelerators.cuda"):
        assert _cuda(nvml).discover() == []
    assert "NVML is not usable on this host (NVML Shared Library Not Found)" in caplog.text
    assert nvml.calls == ["nvmlInit"]


def test_devices_are_listed_through_nvml() -> None:
    nvml = FakeNVML(GPUS)
    devices = _cuda(nvml).discover()
    assert [(d.id, d.model, d.memory_bytes, d.extra) for d in devices] == [
        ("GPU-aaaa", "NVIDIA H200", 141 << 30, {"index": "0"}),
        ("GPU-bbbb", "NVIDIA H200", 141 << 30, {"index": "1"}),
    ]
    assert nvml.calls[0] == "nvmlInit" and nvml.calls[-1] == "nvmlShutdown"
    assert nvml.depth == 0


def test_nvml_is_shut_down_after_an_error_midway() -> None:
    nvml = FakeNVML([*GPUS, {"uuid": None}])  # the third device fails on its name

    def broken(handle: int) -> str:
        raise NVMLError("GPU is lost")

    nvml.nvmlDeviceGetName = broken  # type: ignore[method-assign]
    assert _cuda(nvml).discover() == []
    assert nvml.depth == 0


def test_discrete_allocation_becomes_a_device_request() -> None:
    cuda = _cuda(FakeNVML(GPUS))
    devices = cuda.discover()
    amap = cuda.alloc_map(devices)
    assert amap.capacity() == {"cuda.device": 2.0}
    allocation = amap.allocate({"cuda.device": 1})
    assert allocation == {"cuda.device": {"GPU-aaaa": 1.0}}
    settings = cuda.container_settings(allocation, devices)
    assert settings.device_requests == (
        DeviceRequest(driver="nvidia", device_ids=("GPU-aaaa",), capabilities=(("gpu",),)),
    )
    # The runtime shows the container its GPUs only, numbered from 0.
    assert settings.environ["CUDA_VISIBLE_DEVICES"] == "0"
    both = cuda.container_settings({"cuda.device": {"GPU-bbbb": 1, "GPU-aaaa": 1}}, devices)
    assert both.device_requests[0].device_ids == ("GPU-aaaa", "GPU-bbbb")
    assert both.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert cuda.container_settings({}, devices).device_requests == ()


def test_fractional_mode_shares_a_gpu() -> None:
    cuda = _cuda(FakeNVML(GPUS), mode="fractional")
    devices = cuda.discover()
    amap = cuda.alloc_map(devices)
    assert amap.capacity() == {"cuda.shares": 2.0}
    a = amap.allocate({"cuda.shares": 0.5})
    b = amap.allocate({"cuda.shares": 0.5})
    assert a == b == {"cuda.shares": {"GPU-aaaa": 0.5}}
    request = cuda.container_settings(a, devices).device_requests[0]
    assert request.device_ids == ("GPU-aaaa",)


def test_stats_come_from_nvml() -> None:
    nvml = FakeNVML(GPUS)
    cuda = _cuda(nvml)
    devices = cuda.discover()
    assert cuda.device_stats(devices) == [
        DeviceStats("GPU-aaaa", 141 << 30, 1 << 30, 40.0),
        DeviceStats("GPU-bbbb", 141 << 30, 0, 0.0),
    ]
    assert nvml.depth == 0


def test_the_driver_passes_device_requests_as_docker_expects() -> None:
    cuda = _cuda(FakeNVML(GPUS))
    devices = cuda.discover()
    settings = cuda.container_settings({"cuda.device": {"GPU-bbbb": 1.0}}, devices)

    def spec_with(requests: tuple[DeviceRequest, ...]) -> ContainerSpec:
        return ContainerSpec(
            image="img",
            name="k1",
            labels={},
            memory_bytes=1 << 28,
            cpu_cores=1.0,
            pids_limit=64,
            device_requests=requests,
        )

    spec = spec_with(settings.device_requests)
    (request,) = _device_requests(spec)["device_requests"]
    # The Engine API's HostConfig.DeviceRequests entry (what `docker run --gpus` sends).
    assert dict(request) == {
        "Driver": "nvidia",
        "Count": 0,
        "DeviceIDs": ["GPU-bbbb"],
        "Capabilities": [["gpu"]],
        "Options": {},
    }
    # Without devices nothing is passed: device_requests needs Engine API 1.40.
    assert _device_requests(spec_with(())) == {}
