"""What the agent asks of the engine and what it hears back, as frozen values.

A `ContainerSpec` is everything one kernel container is made of (its per-kernel
quantities, plus the `Hardening` every container shares, `crucible.agent.sandbox`);
`ContainerState` and `ContainerSummary` are what inspecting and listing report. No
Docker here: the driver translates these to and from the engine's API.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Final

import attrs

from crucible.agent.sandbox.hardening import DEFAULT_HARDENING, Hardening, TmpfsMount
from crucible.hookspecs.accelerator import DeviceRequest
from crucible.kernels.contract import CONTAINER_USER

#: Docker refuses memory limits below 6 MiB.
MIN_MEMORY_BYTES: Final = 6 * 1024 * 1024
_ROOT_USERS: Final = frozenset({"0", "root"})
_NAME_RE: Final = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


@attrs.frozen
class BindMount:
    """A host path bind-mounted into the container."""

    source: str = attrs.field()
    target: str
    read_only: bool = True
    #: Mount propagation (``rslave``: mounts the agent adds under the source later show
    #: up in the container, never the other way round); empty: Docker's default.
    propagation: str = ""

    @source.validator
    def _absolute(self, _: attrs.Attribute[str], value: str) -> None:
        if not value.startswith("/"):
            raise ValueError(f"bind source must be an absolute host path: {value!r}")


def _not_root(_: object, __: attrs.Attribute[str], value: str) -> None:
    # Kernel containers always run user code unprivileged (spec 9); a spec that asks for
    # root is a bug, and refusing it here keeps that bug from becoming an escape.
    if value.split(":", 1)[0] in _ROOT_USERS:
        raise ValueError("kernel containers never run as root")


def _valid_name(_: object, __: attrs.Attribute[str], value: str) -> None:
    if not _NAME_RE.match(value):
        raise ValueError(f"invalid container name: {value!r}")


def _positive_finite(_: object, __: attrs.Attribute[float], value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"cpu_cores must be a positive number, got {value!r}")


def _tuple_or_none(value: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


# Typed converters: with a bare `tuple` mypy cannot tell what the field accepts.
def _binds(value: Iterable[BindMount]) -> tuple[BindMount, ...]:
    return tuple(value)


def _tmpfs_mounts(value: Iterable[TmpfsMount]) -> tuple[TmpfsMount, ...]:
    return tuple(value)


def _device_requests(value: Iterable[DeviceRequest]) -> tuple[DeviceRequest, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class ContainerSpec:
    """Everything needed to create one kernel container.

    Per-kernel quantities are here; the policy every container shares is `hardening`
    (see `crucible.agent.sandbox`).
    """

    image: str
    name: str = attrs.field(validator=_valid_name)
    labels: Mapping[str, str]
    #: Memory limit; swap is ``hardening.swap_bytes`` on top (0: none).
    memory_bytes: int = attrs.field(validator=attrs.validators.ge(MIN_MEMORY_BYTES))
    #: CPU quota in cores, fractional allowed (→ Docker's NanoCpus).
    cpu_cores: float = attrs.field(validator=_positive_finite)
    pids_limit: int = attrs.field(validator=attrs.validators.gt(0))
    #: None: the image's CMD / ENTRYPOINT.
    command: tuple[str, ...] | None = attrs.field(default=None, converter=_tuple_or_none)
    entrypoint: tuple[str, ...] | None = attrs.field(default=None, converter=_tuple_or_none)
    env: Mapping[str, str] = attrs.Factory(dict)
    user: str = attrs.field(default=CONTAINER_USER, validator=_not_root)
    workdir: str | None = None
    hostname: str | None = None
    binds: tuple[BindMount, ...] = attrs.field(default=(), converter=_binds)
    #: Engine-managed tmpfs mounts; kernels get ``/tmp`` from `sandbox.tmp_mount`, the
    #: only writable place on their read-only root filesystem besides the binds.
    tmpfs: tuple[TmpfsMount, ...] = attrs.field(default=(), converter=_tmpfs_mounts)
    read_only_rootfs: bool = True
    hardening: Hardening = DEFAULT_HARDENING
    #: Devices an accelerator plugin allocated (`crucible.hookspecs.accelerator`).
    device_requests: tuple[DeviceRequest, ...] = attrs.field(default=(), converter=_device_requests)

    @property
    def nano_cpus(self) -> int:
        return round(self.cpu_cores * 1_000_000_000)


@attrs.frozen
class ContainerState:
    """What `DockerDriver.inspect` reports about one container."""

    id: str
    name: str
    #: Docker's status word: created, running, paused, restarting, removing, exited, dead.
    status: str
    running: bool
    #: Meaningful once the container has exited; 137 after SIGKILL / OOM kill.
    exit_code: int
    #: The kernel's OOM killer killed a process of this container.
    oom_killed: bool
    started_at: datetime | None
    finished_at: datetime | None
    labels: Mapping[str, str] = attrs.Factory(dict)
    #: The engine's error text (e.g. why start failed), empty when none.
    error: str = ""


@attrs.frozen
class ContainerSummary:
    """One row of `DockerDriver.list_containers`."""

    id: str
    name: str
    image: str
    status: str
    labels: Mapping[str, str]
