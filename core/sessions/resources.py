"""What a new session gets: the request, capped by the image and the server (spec 4.2).

GPUs: the 18.12 client sends ``instanceGPUs`` (``-r gpu=1``, ``-r gpu=0.5``, as a
string). It becomes the slot the agents' accelerator plugins offer: whole devices
(``cuda.device``) for a whole number where some agent offers them, else shares of
devices (``cuda.shares``, in steps of 0.01); where both are offered, the kind some agent
has room for now wins. A fraction where only whole devices are offered is the
client's mistake (400)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import attrs

from crucible import errors
from crucible.config import SessionsConfig
from crucible.kernels.contract import LABEL_MAX_CORES, LABEL_MAX_MEM

GiB = 1024**3
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


#: The slots a GPU request may become: whole devices, shares of devices.
GPU_DEVICE_SLOT = "cuda.device"
GPU_SHARES_SLOT = "cuda.shares"
GPU_SLOTS = (GPU_DEVICE_SLOT, GPU_SHARES_SLOT)
#: The smallest GPU share, as the accelerator plugins count it
#: (`crucible.hookspecs.accelerator.QUANTUM`).
GPU_QUANTUM = 0.01


@attrs.frozen
class Resources:
    cpu: float
    mem: int  # bytes
    #: Accelerator slots (``{"cuda.device": 1.0}``); empty: none.
    accelerators: Mapping[str, float] = attrs.field(factory=dict)

    @property
    def gpu(self) -> float:
        """GPUs asked, whole devices or shares alike."""
        return sum(self.accelerators.get(slot, 0.0) for slot in GPU_SLOTS)

    def slots(self) -> dict[str, float]:
        return {"cpu": self.cpu, "mem": float(self.mem), **self.accelerators}


def parse_size(text: str) -> int:
    """``128m``, ``2g``, ``512`` (bytes) → bytes, as image labels write sizes."""
    match = _SIZE_RE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    return int(float(match[1]) * _UNITS[match[2].lower()])


def _positive_number(value: Any, key: str) -> float | None:
    """A number or numeric string (the CLI sends strings); None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise errors.InvalidAPIParameters(f"'{key}' must be a number.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise errors.InvalidAPIParameters(f"'{key}' must be a number.") from None
    except OverflowError:
        # An integer beyond a float's range (JSON has no bound on digits).
        raise errors.InvalidAPIParameters(f"'{key}' is out of range.") from None
    if not math.isfinite(number) or number <= 0:
        raise errors.InvalidAPIParameters(f"'{key}' must be a positive number.")
    return number


def _label_number(labels: Mapping[str, str], key: str, parse: Any) -> float | None:
    raw = labels.get(key)
    if not raw:
        return None
    try:
        return float(parse(raw))
    except ValueError:
        return None


def requested_gpus(request_config: Mapping[str, Any]) -> float:
    """GPUs the request asks for (0: none); 400 unless zero or more in steps of 0.01."""
    value = request_config.get("instanceGPUs")
    if value is None or value == "" or value == 0:
        return 0.0
    if isinstance(value, bool):
        raise errors.InvalidAPIParameters("'instanceGPUs' must be a number.")
    try:
        gpus = float(value)
    except (TypeError, ValueError):
        raise errors.InvalidAPIParameters(
            f"'instanceGPUs' must be a number of GPUs (e.g. 1 or 0.5), not {str(value)[:32]!r}."
        ) from None
    except OverflowError:
        raise errors.InvalidAPIParameters("'instanceGPUs' is out of range.") from None
    if not math.isfinite(gpus) or gpus < 0 or gpus > 1e6:
        raise errors.InvalidAPIParameters("'instanceGPUs' must be zero or a positive number.")
    steps = gpus / GPU_QUANTUM
    if gpus and (steps < 1 - 1e-9 or abs(steps - round(steps)) > 1e-6):
        raise errors.InvalidAPIParameters(
            f"'instanceGPUs' comes in steps of {GPU_QUANTUM:g} of a GPU, not {gpus:g}."
        )
    return round(steps) / 100 if gpus else 0.0


def gpu_slots(gpus: float, room: Mapping[str, float]) -> dict[str, float]:
    """The slot `gpus` GPUs are asked as, given the slots alive agents offer and the
    most any one of them has free of each (`room`)."""
    if not gpus:
        return {}
    whole = gpus == int(gpus)
    # A kind some agent has room for first (a cluster may offer both kinds)...
    if whole and room.get(GPU_DEVICE_SLOT, -1.0) >= gpus:
        return {GPU_DEVICE_SLOT: gpus}
    if room.get(GPU_SHARES_SLOT, -1.0) >= gpus:
        return {GPU_SHARES_SLOT: gpus}
    # ... else the kind offered at all (placement then says there is no room).
    offered = set(room)
    if whole and GPU_DEVICE_SLOT in offered:
        return {GPU_DEVICE_SLOT: gpus}
    if GPU_SHARES_SLOT in offered:
        return {GPU_SHARES_SLOT: gpus}
    if GPU_DEVICE_SLOT in offered:
        raise errors.InvalidAPIParameters(
            f"'instanceGPUs' is {gpus:g}, but the agents offer whole GPUs only "
            f"({GPU_DEVICE_SLOT}): ask for a whole number."
        )
    raise errors.InstanceNotAvailable("No agent offers GPUs (cuda.device or cuda.shares).")


def requested_resources(
    request_config: Mapping[str, Any],
) -> tuple[float | None, float | None, float]:
    """``(cores, memory in GiB, GPUs)`` as the request asks (None, 0: not said); 400 when
    one is not a valid amount. Needs no image, so the API checks it first."""
    return (
        _positive_number(request_config.get("instanceCores"), "instanceCores"),
        _positive_number(request_config.get("instanceMemory"), "instanceMemory"),
        requested_gpus(request_config),
    )


def resolve_resources(
    request_config: Mapping[str, Any],
    image_labels: Mapping[str, str],
    limits: SessionsConfig,
    room: Mapping[str, float] | None = None,
) -> Resources:
    """Requested cores, memory (GiB, as the client sends it) and GPUs, defaulted and
    capped; GPUs become the slot the agents offer (`room`: every slot some alive agent
    has, and the most one of them has free, `crucible.db.queries.agents.most_free`)."""
    cpu, mem_gib, gpus = requested_resources(request_config)
    if limits.max_gpus:
        gpus = round(min(gpus, float(limits.max_gpus)), 2)
    cpu_cap = min(
        limits.max_cpu_cores, _label_number(image_labels, LABEL_MAX_CORES, float) or math.inf
    )
    mem_cap = min(
        float(limits.max_memory_bytes),
        _label_number(image_labels, LABEL_MAX_MEM, parse_size) or math.inf,
    )
    cpu = min(cpu if cpu is not None else limits.default_cpu_cores, cpu_cap)
    mem = min(mem_gib * GiB if mem_gib is not None else float(limits.default_memory_bytes), mem_cap)
    # Below these a kernel cannot even start its runner.
    return Resources(
        cpu=max(round(cpu, 3), 0.01),
        mem=max(int(mem), 64 * 1024**2),
        accelerators=gpu_slots(gpus, room or {}),
    )
