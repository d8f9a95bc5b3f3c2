"""What a new session gets: the request, capped by the image and the server (spec 4.2)."""

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


@attrs.frozen
class Resources:
    cpu: float
    mem: int  # bytes

    def slots(self) -> dict[str, float]:
        return {"cpu": self.cpu, "mem": float(self.mem)}


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


def requested_resources(request_config: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """``(cores, memory in GiB)`` as the request asks (None: not said); 400 when either
    is not a positive number. Needs no image, so the API checks it first."""
    return (
        _positive_number(request_config.get("instanceCores"), "instanceCores"),
        _positive_number(request_config.get("instanceMemory"), "instanceMemory"),
    )


def resolve_resources(
    request_config: Mapping[str, Any], image_labels: Mapping[str, str], limits: SessionsConfig
) -> Resources:
    """Requested cores and memory (GiB, as the client sends it), defaulted and capped."""
    cpu, mem_gib = requested_resources(request_config)
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
    return Resources(cpu=max(round(cpu, 3), 0.01), mem=max(int(mem), 64 * 1024**2))
