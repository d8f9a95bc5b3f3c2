"""Service ports (spec 9, ``ai.backend.service-ports``): the apps an image offers.

An image declares them in one label, comma-separated ``name:protocol:port`` entries
(``jupyter:http:8080,tensorboard:http:6006``). They are the session's ``servicePorts``
(spec 4.2), what ``/stream/kernel/:id/httpproxy|tcpproxy?app=NAME`` and the ``pty``
stream's ``service=`` select (spec 5.3, 5.5), and what the runner's ``start_service``
starts.

A declaration is checked where it is made (the image builder refuses to build a recipe
whose ports are bad) and where it is read (an agent does not offer an image whose label
is bad, `ServicePortError` says why), so nothing downstream sees a malformed port.

Pure: no I/O. Shared by the manager (answers, tunnels) and the agent (labels, starts).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

#: The image label that declares them (spec 9); legacy images use the ``io.sorna.`` prefix.
LABEL_SERVICE_PORTS: Final = "ai.backend.service-ports"
LEGACY_LABEL_SERVICE_PORTS: Final = "io.sorna.service-ports"

#: The protocols spec 9 names: ``http`` and ``tcp`` are tunnelled (spec 5.5), ``pty`` is
#: a terminal (spec 5.3).
PROTOCOLS: Final = ("http", "tcp", "pty")
#: Ports must be above this (spec 9: "port > 1024") and at most `MAX_PORT`.
MIN_PORT_EXCLUSIVE: Final = 1024
MAX_PORT: Final = 65535
#: Ports the kernel protocol of Backend.AI's era keeps for itself (spec 9, "Query mode
#: port": 2000/2001 REPL in/out, 2002/2003 the PTY streams); refused so that an image
#: written for that era's agents does not clash with them.
RESERVED_PORTS: Final = frozenset({2000, 2001, 2002, 2003})
#: A service name: what ``?app=`` carries and the label holds between its separators.
NAME_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")
#: How many services one image may declare.
MAX_SERVICES: Final = 16


class ServicePortError(ValueError):
    """A service-port declaration that is not valid; the message says which and why."""


@attrs.frozen
class ServicePort:
    """One declared service: `name` (``jupyter``), `protocol` (``http``, ``tcp`` or
    ``pty``) and the `port` it listens on inside the container."""

    name: str
    protocol: str
    port: int

    def __attrs_post_init__(self) -> None:
        _check(self.name, self.protocol, self.port)

    def label_entry(self) -> str:
        """The ``name:protocol:port`` text of the label."""
        return f"{self.name}:{self.protocol}:{self.port}"

    def to_api(self) -> dict[str, Any]:
        """The spec 4.2 ``servicePorts`` entry. ``host_port`` is null: containers have no
        network (``--network none``), so no host port is ever published; the service is
        reached only through the tunnels (spec 5.5)."""
        return {
            "name": self.name,
            "protocol": self.protocol,
            "container_port": self.port,
            "host_port": None,
        }


def _check(name: object, protocol: object, port: object) -> None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ServicePortError(
            f"service name {name!r} is not valid: 1-32 characters of a-z, 0-9, '_', '.',"
            " '-', starting with a letter or digit"
        )
    if protocol not in PROTOCOLS:
        raise ServicePortError(
            f"service {name!r}: protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}"
        )
    if isinstance(port, bool) or not isinstance(port, int):
        raise ServicePortError(f"service {name!r}: port {port!r} is not an integer")
    if not MIN_PORT_EXCLUSIVE < port <= MAX_PORT:
        raise ServicePortError(
            f"service {name!r}: port {port} is out of range ({MIN_PORT_EXCLUSIVE + 1}-{MAX_PORT})"
        )
    if port in RESERVED_PORTS:
        reserved = ", ".join(str(p) for p in sorted(RESERVED_PORTS))
        raise ServicePortError(f"service {name!r}: port {port} is reserved ({reserved})")


def _check_unique(ports: Iterable[ServicePort]) -> tuple[ServicePort, ...]:
    result = tuple(ports)
    if len(result) > MAX_SERVICES:
        raise ServicePortError(f"{len(result)} services declared; at most {MAX_SERVICES}")
    names: set[str] = set()
    numbers: set[int] = set()
    for port in result:
        if port.name in names:
            raise ServicePortError(f"service {port.name!r} is declared twice")
        if port.port in numbers:
            raise ServicePortError(f"port {port.port} is declared twice (service {port.name!r})")
        names.add(port.name)
        numbers.add(port.port)
    return result


def parse_service_ports(label: str) -> tuple[ServicePort, ...]:
    """The services a ``ai.backend.service-ports`` label declares, in its order.

    Empty or blank text declares none. `ServicePortError` on any bad entry: a missing
    part, an unknown protocol, a port that is not a number above 1024 or is reserved, a
    name or port declared twice.
    """
    if not isinstance(label, str):
        raise ServicePortError(f"the service-ports label must be text, got {label!r}")
    if not label.strip():
        return ()
    ports = []
    for raw in label.split(","):
        entry = raw.strip()
        if not entry:
            raise ServicePortError(f"empty entry in service-ports label {label!r}")
        parts = entry.split(":")
        if len(parts) != 3:
            raise ServicePortError(f"service-port entry {entry!r} is not name:protocol:port")
        name, protocol, number = (part.strip() for part in parts)
        if not number.isascii() or not number.isdigit():
            raise ServicePortError(f"service {name!r}: port {number!r} is not a number")
        ports.append(ServicePort(name, protocol.lower(), int(number)))
    return _check_unique(ports)


def format_service_ports(ports: Iterable[ServicePort]) -> str:
    """The label text for `ports` (checked: the inverse of `parse_service_ports`)."""
    return ",".join(port.label_entry() for port in _check_unique(ports))


def image_service_ports(labels: Mapping[str, str]) -> tuple[ServicePort, ...]:
    """The services an image's labels declare (none without the label);
    `ServicePortError` when the label is bad."""
    label = labels.get(LABEL_SERVICE_PORTS)
    if label is None:
        label = labels.get(LEGACY_LABEL_SERVICE_PORTS, "")
    return parse_service_ports(label)


def find_service(ports: Iterable[ServicePort], name: str) -> ServicePort | None:
    """The service called `name` among `ports`, if declared."""
    return next((port for port in ports if port.name == name), None)


def service_ports_from_api(entries: Iterable[Mapping[str, Any]]) -> tuple[ServicePort, ...]:
    """`ServicePort` values back from stored `ServicePort.to_api` entries."""
    return tuple(
        ServicePort(str(entry["name"]), str(entry["protocol"]), int(entry["container_port"]))
        for entry in entries
    )
