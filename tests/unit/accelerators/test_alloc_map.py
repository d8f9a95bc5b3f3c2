"""The allocation maps: whole devices, shares of devices, in integer steps of 0.01."""

from __future__ import annotations

import pytest

from crucible.hookspecs.accelerator import (
    AllocMap,
    Device,
    DeviceStats,
    InsufficientDevices,
    is_whole_steps,
    kernel_device_stats,
)
from crucible.plugins.accelerators.alloc_map import DiscreteAllocMap, FractionalAllocMap


def _devices(n: int) -> list[Device]:
    return [Device(id=str(i), model="test", memory_bytes=1 << 30) for i in range(n)]


def test_maps_are_alloc_maps() -> None:
    assert isinstance(DiscreteAllocMap("x.device", _devices(1)), AllocMap)
    assert isinstance(FractionalAllocMap("x.shares", _devices(1)), AllocMap)


def test_discrete_gives_whole_devices_until_none_is_left() -> None:
    amap = DiscreteAllocMap("cuda.device", _devices(2))
    assert amap.capacity() == {"cuda.device": 2.0}
    first = amap.allocate({"cuda.device": 1})
    assert first == {"cuda.device": {"0": 1.0}}
    second = amap.allocate({"cuda.device": 1})
    assert second == {"cuda.device": {"1": 1.0}}
    assert amap.free_slots() == {"cuda.device": 0.0}
    with pytest.raises(InsufficientDevices, match=r"1 cuda.device asked, 0 free"):
        amap.allocate({"cuda.device": 1})
    amap.free(first)
    assert amap.allocate({"cuda.device": 1}) == {"cuda.device": {"0": 1.0}}


def test_discrete_refuses_fractions_and_takes_nothing_on_failure() -> None:
    amap = DiscreteAllocMap("cuda.device", _devices(2))
    with pytest.raises(ValueError, match=r"whole devices"):
        amap.allocate({"cuda.device": 0.5})
    with pytest.raises(InsufficientDevices):
        amap.allocate({"cuda.device": 3})
    assert amap.free_slots() == {"cuda.device": 2.0}
    with pytest.raises(ValueError, match=r"not a slot"):
        amap.allocate({"cuda.shares": 1})
    assert amap.allocate({"cuda.device": 0}) == {}


def test_fractional_shares_one_device_between_sessions() -> None:
    amap = FractionalAllocMap("cuda.shares", _devices(1))
    a = amap.allocate({"cuda.shares": 0.5})
    b = amap.allocate({"cuda.shares": 0.3})
    assert a == {"cuda.shares": {"0": 0.5}}
    assert b == {"cuda.shares": {"0": 0.3}}
    assert amap.free_slots() == {"cuda.shares": 0.2}
    with pytest.raises(InsufficientDevices, match=r"at most 0.2 on one device"):
        amap.allocate({"cuda.shares": 0.25})
    amap.free(a)
    assert amap.free_slots() == {"cuda.shares": 0.7}


def test_fractional_steps_do_not_drift() -> None:
    amap = FractionalAllocMap("cuda.shares", _devices(1))
    taken = [amap.allocate({"cuda.shares": 0.01}) for _ in range(100)]
    assert amap.free_slots() == {"cuda.shares": 0.0}
    with pytest.raises(InsufficientDevices):
        amap.allocate({"cuda.shares": 0.01})
    for allocation in taken:
        amap.free(allocation)
    assert amap.free_slots() == {"cuda.shares": 1.0}
    # 0.29 is 29 steps, not 28 (0.29 * 100 is 28.999999999999996 in floats).
    assert amap.allocate({"cuda.shares": 0.29}) == {"cuda.shares": {"0": 0.29}}


def test_fractional_refuses_less_than_a_step() -> None:
    amap = FractionalAllocMap("cuda.shares", _devices(1))
    with pytest.raises(ValueError, match=r"steps of 0.01"):
        amap.allocate({"cuda.shares": 0.001})
    assert not is_whole_steps(0.001)
    assert is_whole_steps(0.07)


def test_fractional_fills_the_fullest_device_that_fits_and_spans_for_more_than_one() -> None:
    amap = FractionalAllocMap("cuda.shares", _devices(3))
    amap.allocate({"cuda.shares": 0.6})  # device 0
    # Best fit: 0.4 goes to device 0 (0.4 free), keeping devices 1 and 2 whole.
    assert amap.allocate({"cuda.shares": 0.4}) == {"cuda.shares": {"0": 0.4}}
    # 1.5: one whole idle device and half of another.
    assert amap.allocate({"cuda.shares": 1.5}) == {"cuda.shares": {"1": 1.0, "2": 0.5}}
    with pytest.raises(InsufficientDevices):
        amap.allocate({"cuda.shares": 1.0})


def test_restore_takes_what_a_label_says_even_past_capacity() -> None:
    amap = FractionalAllocMap("cuda.shares", _devices(1))
    amap.restore({"cuda.shares": {"0": 0.75}})
    assert amap.free_slots() == {"cuda.shares": 0.25}
    amap.restore({"cuda.shares": {"0": 0.5}})
    assert amap.free_slots() == {"cuda.shares": -0.25}
    with pytest.raises(InsufficientDevices):
        amap.allocate({"cuda.shares": 0.01})
    # A device this host no longer has is ignored.
    amap.restore({"cuda.shares": {"7": 1.0}})
    assert amap.capacity() == {"cuda.shares": 1.0}


def test_kernel_device_stats_are_those_of_its_devices() -> None:
    stats = [DeviceStats("0", 10), DeviceStats("1", 20)]
    assert kernel_device_stats({"cuda.device": {"1": 1.0}}, stats) == [DeviceStats("1", 20)]
