"""What the agent knows about one kernel, and its container label that keeps it.

The label (``crucible.kernel-info``) is how a restarted agent recovers its kernels:
everything here is written into it when the container is made and read back from it.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs

from crucible.kernels.service_ports import ServicePort


@attrs.frozen
class KernelInfo:
    """What the agent knows about a kernel, also recoverable from container labels."""

    kernel_id: str
    image: str
    lang: str
    exec_timeout: float  # seconds; 0 = unlimited
    cpu: float
    mem: int
    environ: dict[str, str]
    #: The host directory holding ``work/`` (the session's /home/work) and ``ipc/``.
    kernel_dir: Path
    #: Mounted vfolders: ``(host path, container path, read-only)`` (spec 4.2 mounts).
    mounts: tuple[tuple[str, str, bool], ...] = ()
    #: The owner's access key: the agent shares execution slots fairly between keys.
    access_key: str = ""
    #: The apps its image declares (spec 9 ``ai.backend.service-ports``), read when the
    #: kernel was made: what ``start_service`` may start.
    service_ports: tuple[ServicePort, ...] = ()

    @property
    def ipc_dir(self) -> Path:
        """Where the agent listens for the runner (the container sees it read-only)."""
        return self.kernel_dir / "ipc"


def info_to_label(info: KernelInfo) -> str:
    """The ``crucible.kernel-info`` label of the kernel's container."""
    return json.dumps(
        {
            "kernel_id": info.kernel_id,
            "image": info.image,
            "lang": info.lang,
            "exec_timeout": info.exec_timeout,
            "cpu": info.cpu,
            "mem": info.mem,
            "environ": info.environ,
            "kernel_dir": str(info.kernel_dir),
            "mounts": [list(m) for m in info.mounts],
            "access_key": info.access_key,
            "service_ports": [[p.name, p.protocol, p.port] for p in info.service_ports],
        }
    )


def info_from_label(text: str) -> KernelInfo:
    """The kernel a label describes; `KeyError`, `ValueError` or `TypeError` when the
    label is not one this agent wrote (a label from before access keys has none)."""
    data = json.loads(text)
    return KernelInfo(
        kernel_id=str(data["kernel_id"]),
        image=str(data["image"]),
        lang=str(data["lang"]),
        exec_timeout=float(data["exec_timeout"]),
        cpu=float(data["cpu"]),
        mem=int(data["mem"]),
        environ={str(k): str(v) for k, v in data["environ"].items()},
        kernel_dir=Path(data["kernel_dir"]),
        mounts=tuple(
            (str(source), str(target), bool(ro)) for source, target, ro in data.get("mounts", [])
        ),
        access_key=str(data.get("access_key", "")),
        service_ports=tuple(
            ServicePort(str(name), str(protocol), int(port))
            for name, protocol, port in data.get("service_ports", [])
        ),
    )
