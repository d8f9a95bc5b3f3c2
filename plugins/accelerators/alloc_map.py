"""The two allocation maps accelerator plugins use: whole devices, and shares of them.

Both count in integer steps of `QUANTUM` (a whole device is `STEPS_PER_UNIT` steps), so
amounts never drift however many sessions come and go; floats appear only at the edges
(`capacity`, `free_slots`, the allocation handed out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from crucible.hookspecs.accelerator import (
    STEPS_PER_UNIT,
    Allocation,
    AllocMap,
    Device,
    InsufficientDevices,
    from_steps,
    is_whole_steps,
    to_steps,
)


class _StepMap:
    """Free steps per device of one slot; the subclasses decide how a request is laid
    over the devices."""

    def __init__(self, slot_name: str, devices: Sequence[Device]) -> None:
        self.slot_name = slot_name
        #: Devices in discovery order: allocation prefers the first ones.
        self._free = {device.id: STEPS_PER_UNIT for device in devices}

    def capacity(self) -> dict[str, float]:
        return {self.slot_name: from_steps(len(self._free) * STEPS_PER_UNIT)}

    def free_slots(self) -> dict[str, float]:
        return {self.slot_name: from_steps(sum(self._free.values()))}

    def allocate(self, requested: Mapping[str, float]) -> Allocation:
        unknown = set(requested) - {self.slot_name}
        if unknown:
            raise ValueError(f"not a slot of this map: {', '.join(sorted(unknown))}")
        amount = requested.get(self.slot_name, 0.0)
        if amount <= 0:
            return {}
        steps = self._checked_steps(amount)
        layout = self._lay_out(steps)
        if layout is None:
            free = self.free_slots()[self.slot_name]
            raise InsufficientDevices(
                f"{amount:g} {self.slot_name} asked, {free:g} free on this agent"
                + self._free_note()
            )
        for device, taken in layout.items():
            self._free[device] -= taken
        return {self.slot_name: {device: from_steps(taken) for device, taken in layout.items()}}

    def free(self, allocation: Allocation) -> None:
        for device, amount in allocation.get(self.slot_name, {}).items():
            if device in self._free:
                self._free[device] = min(STEPS_PER_UNIT, self._free[device] + to_steps(amount))

    def restore(self, allocation: Allocation) -> None:
        for device, amount in allocation.get(self.slot_name, {}).items():
            if device in self._free:
                self._free[device] -= to_steps(amount)

    def _checked_steps(self, amount: float) -> int:
        raise NotImplementedError

    def _lay_out(self, steps: int) -> dict[str, int] | None:
        raise NotImplementedError

    def _free_note(self) -> str:
        return ""


class DiscreteAllocMap(_StepMap):
    """Whole devices (``cuda.device``): a session gets devices of its own."""

    def _checked_steps(self, amount: float) -> int:
        if amount != int(amount):
            raise ValueError(f"{self.slot_name} counts whole devices, not {amount:g}")
        return int(amount) * STEPS_PER_UNIT

    def _lay_out(self, steps: int) -> dict[str, int] | None:
        idle = [device for device, free in self._free.items() if free == STEPS_PER_UNIT]
        wanted = steps // STEPS_PER_UNIT
        if len(idle) < wanted:
            return None
        return {device: STEPS_PER_UNIT for device in idle[:wanted]}


class FractionalAllocMap(_StepMap):
    """Shares of devices (``cuda.shares``, 1.0 = one whole device): several sessions may
    share one device. Up to one device's worth lands on a single device (a process uses
    one device; half of two is not half of one); more takes whole idle devices and the
    rest on one more device."""

    def _checked_steps(self, amount: float) -> int:
        if not is_whole_steps(amount):
            raise ValueError(
                f"{self.slot_name} comes in steps of {from_steps(1):g}, not {amount:g}"
            )
        return to_steps(amount)

    def _lay_out(self, steps: int) -> dict[str, int] | None:
        whole, rest = divmod(steps, STEPS_PER_UNIT)
        idle = [device for device, free in self._free.items() if free == STEPS_PER_UNIT]
        if len(idle) < whole:
            return None
        layout = dict.fromkeys(idle[:whole], STEPS_PER_UNIT)
        if rest:
            # Best fit: the fullest device that still has room keeps idle ones whole.
            room = [
                (free, device)
                for device, free in self._free.items()
                if device not in layout and free >= rest
            ]
            if not room:
                return None
            layout[min(room)[1]] = rest
        return layout

    def _free_note(self) -> str:
        most = max(self._free.values(), default=0)
        return f" (at most {from_steps(most):g} on one device)"


class ModalSlots:
    """The slot and map of a plugin with a ``mode`` option (a base for its accelerator):
    ``discrete`` offers whole devices as `device_slot`, ``fractional`` shares of them
    as `shares_slot`."""

    def __init__(self, mode: str, *, device_slot: str, shares_slot: str) -> None:
        self.mode = mode
        self.slot_name = device_slot if mode == "discrete" else shares_slot
        self.slot_names: tuple[str, ...] = (self.slot_name,)

    def alloc_map(self, devices: Sequence[Device]) -> AllocMap:
        if self.mode == "discrete":
            return DiscreteAllocMap(self.slot_name, devices)
        return FractionalAllocMap(self.slot_name, devices)
