"""The agent's accelerators: loading (names, tables), discovery (a failing plugin is left
out), allocation across plugins all or nothing, labels, restore, container settings."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from crucible.agent.accelerators import Accelerators, AllocationRefused, open_accelerators
from crucible.agent.containers import ContainerPolicy
from crucible.agent.kernel.info import KernelInfo, info_from_label, info_to_label
from crucible.config import Config, ConfigError, NonNegativeInt, config_from_dict, plugin_options
from crucible.config.types import ByteSize
from crucible.hookspecs.accelerator import (
    Allocation,
    AllocMap,
    ContainerSettings,
    Device,
    DeviceMount,
    DeviceStats,
)
from crucible.hookspecs.markers import hookimpl
from crucible.plugins.accelerators.alloc_map import DiscreteAllocMap
from crucible.plugins.accelerators.mock import MockOptions


def _config(accelerators: list[str], **tables: dict[str, Any]) -> Config:
    return config_from_dict({"agent": {"accelerators": accelerators}, "accelerators": tables})


@attrs.frozen
class TPUOptions:
    chips: int = 2
    fail: bool = False


class TPU:
    """A second plugin with its own slot, to check allocation across plugins."""

    slot_names = ("tpu.device",)

    def __init__(self, options: TPUOptions) -> None:
        self.options = options

    def discover(self) -> list[Device]:
        if self.options.fail:
            raise RuntimeError("the TPU driver is broken")
        return [Device(id=f"t{i}", model="TPU", memory_bytes=0) for i in range(self.options.chips)]

    def alloc_map(self, devices: Sequence[Device]) -> AllocMap:
        return DiscreteAllocMap("tpu.device", devices)

    def container_settings(
        self, allocation: Allocation, devices: Sequence[Device]
    ) -> ContainerSettings:
        chips = ",".join(sorted(allocation.get("tpu.device", {})))
        return ContainerSettings(
            environ={"TPU_CHIPS": chips},
            mounts=(DeviceMount("/usr/lib/tpu", "/opt/tpu"),),
        )

    def device_stats(self, devices: Sequence[Device]) -> list[DeviceStats]:
        raise RuntimeError("no stats today")


class TPUPlugin:
    name = "tpu"
    options_type = TPUOptions

    def open(self, options: TPUOptions) -> TPU:
        return TPU(options)


class TPUModule:
    @hookimpl
    def crucible_accelerator(self) -> TPUPlugin:
        return TPUPlugin()


async def _opened(config: Config) -> Accelerators:
    accelerators = open_accelerators(config, TPUModule())
    await accelerators.discover()
    return accelerators


def test_no_accelerators_by_default() -> None:
    assert Config().agent.accelerators == []
    assert open_accelerators(Config()).capacity() == {}


def test_a_name_not_installed_stops_the_agent_clearly() -> None:
    with pytest.raises(ConfigError, match=r"no accelerator plugin named 'gpux'.*installed: "):
        open_accelerators(_config(["gpux"]))


def test_every_problem_of_a_table_is_reported_at_once() -> None:
    config = _config(["mock"], mock={"devices": -1, "memory": "lots", "mode": "half", "x": 1})
    with pytest.raises(ConfigError) as caught:
        open_accelerators(config)
    text = "\n".join(caught.value.problems)
    for key in ("devices", "memory", "mode"):
        assert f"accelerators.mock.{key}:" in text
    assert "accelerators.mock.x: unknown key" in text


def test_plugin_options_read_sizes() -> None:
    options = plugin_options("accelerators.mock", {"memory": "512MiB", "devices": 3}, MockOptions)
    assert options == MockOptions(devices=NonNegativeInt(3), memory=ByteSize(512 << 20))
    with pytest.raises(ConfigError, match=r"accelerators.mock.memory: must be a number of bytes"):
        plugin_options("accelerators.mock", {"memory": "16 gigs"}, MockOptions)


def test_a_table_for_a_plugin_not_loaded_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"accelerators.mokc: no such plugin"):
        _config(["mock"], mokc={"devices": 2})
    with pytest.raises(ConfigError, match=r"'mock' is listed twice"):
        _config(["mock", "mock"])


async def test_a_plugin_failing_discovery_is_left_out_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = _config(["mock", "tpu"], mock={"devices": 1}, tpu={"fail": True})
    with caplog.at_level(logging.ERROR, "crucible.agent.accelerators"):
        accelerators = await _opened(config)
    assert accelerators.names == ["mock"]
    assert accelerators.capacity() == {"cuda.device": 1.0}
    assert "accelerator tpu failed to discover its devices" in caplog.text
    assert "the TPU driver is broken" in caplog.text


async def test_allocation_across_plugins_is_all_or_nothing() -> None:
    accelerators = await _opened(_config(["mock", "tpu"], mock={"devices": 1}))
    assert accelerators.capacity() == {"cuda.device": 1.0, "tpu.device": 2.0}
    with pytest.raises(AllocationRefused, match=r"2 cuda.device asked, 1 free"):
        accelerators.allocate("k1", {"tpu.device": 1, "cuda.device": 2})
    assert accelerators.free_slots() == {"cuda.device": 1.0, "tpu.device": 2.0}
    with pytest.raises(AllocationRefused, match=r"this agent has no rocm.device"):
        accelerators.allocate("k1", {"rocm.device": 1})
    taken = accelerators.allocate("k1", {"tpu.device": 1, "cuda.device": 1, "cpu": 0})
    assert taken == {"mock": {"cuda.device": {"0": 1.0}}, "tpu": {"tpu.device": {"t0": 1.0}}}
    with pytest.raises(AllocationRefused, match=r"holds devices already"):
        accelerators.allocate("k1", {"tpu.device": 1})
    accelerators.free("k1")
    accelerators.free("k1")  # once only: the second is nothing
    assert accelerators.free_slots() == {"cuda.device": 1.0, "tpu.device": 2.0}


async def test_restore_from_a_label_holds_the_devices(tmp_path: Path) -> None:
    accelerators = await _opened(_config(["mock"], mock={"devices": 2, "mode": "fractional"}))
    taken = accelerators.allocate("k1", {"cuda.shares": 0.5})
    info = KernelInfo("k1", "img", "python", 0, 1.0, 1 << 28, {}, tmp_path, allocation=taken)
    label = info_to_label(info)
    # A new agent process: a fresh map, the label read back.
    restarted = await _opened(_config(["mock"], mock={"devices": 2, "mode": "fractional"}))
    recovered = info_from_label(label)
    assert recovered.allocation == {"mock": {"cuda.shares": {"0": 0.5}}}
    restarted.restore("k1", recovered.allocation)
    assert restarted.free_slots() == {"cuda.shares": 1.5}
    assert restarted.allocate("k2", {"cuda.shares": 0.5}) == {"mock": {"cuda.shares": {"0": 0.5}}}
    assert restarted.allocate("k3", {"cuda.shares": 1}) == {"mock": {"cuda.shares": {"1": 1.0}}}
    restarted.free("k1")
    assert restarted.free_slots() == {"cuda.shares": 0.5}


def test_a_label_with_a_bad_allocation_is_refused(tmp_path: Path) -> None:
    info = KernelInfo("k1", "img", "python", 0, 1.0, 1 << 28, {}, tmp_path)
    label = info_to_label(info).replace('"allocation": {}', '"allocation": {"mock": 3}')
    with pytest.raises(ValueError):
        info_from_label(label)


async def test_the_container_gets_devices_variables_and_mounts(tmp_path: Path) -> None:
    config = _config(["mock", "tpu"], mock={"devices": 2, "mode": "fractional"})
    accelerators = await _opened(config)
    taken = accelerators.allocate("k1", {"cuda.shares": 1.5, "tpu.device": 1})
    info = KernelInfo(
        "k1",
        "img",
        "python",
        0,
        1.0,
        1 << 28,
        {"CUDA_VISIBLE_DEVICES": "5", "MINE": "1"},
        tmp_path,
        allocation=taken,
    )
    spec = ContainerPolicy(config.agent, "agent-1", accelerators).spec(info)
    assert spec.env["CUDA_VISIBLE_DEVICES"] == "0,1"  # the session cannot point elsewhere
    assert spec.env["MINE"] == "1"
    assert spec.env["MOCK_ACCELERATOR_SHARES"] == "0:1,1:0.5"
    assert spec.env["MOCK_ACCELERATOR_MEMORY"] == str(24 << 30)
    assert spec.env["TPU_CHIPS"] == "t0"
    assert ("/usr/lib/tpu", "/opt/tpu", True) in {
        (b.source, b.target, b.read_only) for b in spec.binds
    }
    assert spec.device_requests == ()


async def test_device_stats_of_a_failing_plugin_are_empty() -> None:
    accelerators = await _opened(_config(["mock", "tpu"], mock={"devices": 1}))
    stats = await accelerators.device_stats()
    assert stats["tpu"] == []
    assert stats["mock"] == [DeviceStats("0", 16 << 30, 0, 0.0)]
