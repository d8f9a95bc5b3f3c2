"""spec 9 ``ai.backend.service-ports``: what a declaration may say, and what is refused."""

from __future__ import annotations

import pytest

from crucible.kernels.service_ports import (
    LABEL_SERVICE_PORTS,
    LEGACY_LABEL_SERVICE_PORTS,
    ServicePort,
    ServicePortError,
    find_service,
    format_service_ports,
    image_service_ports,
    parse_service_ports,
    service_ports_from_api,
)


def test_parses_each_entry_in_order() -> None:
    ports = parse_service_ports(
        "jupyter:http:8080, tensorboard:http:6006,ssh:tcp:2200,term:pty:7681"
    )
    assert ports == (
        ServicePort("jupyter", "http", 8080),
        ServicePort("tensorboard", "http", 6006),
        ServicePort("ssh", "tcp", 2200),
        ServicePort("term", "pty", 7681),
    )


@pytest.mark.parametrize("label", ["", "   "])
def test_blank_declares_none(label: str) -> None:
    assert parse_service_ports(label) == ()


@pytest.mark.parametrize(
    ("label", "why"),
    [
        ("jupyter:http", "not name:protocol:port"),
        ("jupyter:http:8080:1", "not name:protocol:port"),
        ("jupyter:udp:8080", "protocol 'udp'"),
        ("jupyter:http:80", "out of range"),
        ("jupyter:http:1024", "out of range"),
        ("jupyter:http:65536", "out of range"),
        ("jupyter:http:-5", "not a number"),
        ("jupyter:http:80a", "not a number"),
        ("jupyter:http:٨٠٨٠", "not a number"),
        ("repl:tcp:2001", "reserved"),
        ("pty:pty:2002", "reserved"),
        ("Jupyter:http:8080", "name 'Jupyter'"),
        (":http:8080", "name ''"),
        ("a/b:http:8080", "name 'a/b'"),
        ("a:http:8080,a:tcp:8081", "declared twice"),
        ("a:http:8080,b:tcp:8080", "port 8080 is declared twice"),
        ("a:http:8080,,b:tcp:8081", "empty entry"),
        ("a:http:8080,", "empty entry"),
        (",".join(f"s{i}:tcp:{3000 + i}" for i in range(17)), "at most 16"),
    ],
)
def test_bad_declarations_are_refused_with_the_reason(label: str, why: str) -> None:
    with pytest.raises(ServicePortError, match=why):
        parse_service_ports(label)


def test_a_port_value_checks_itself() -> None:
    with pytest.raises(ServicePortError, match="reserved"):
        ServicePort("x", "tcp", 2000)
    with pytest.raises(ServicePortError, match="not an integer"):
        ServicePort("x", "tcp", True)


def test_format_is_the_inverse_of_parse() -> None:
    ports = (ServicePort("jupyter", "http", 8080), ServicePort("tb", "http", 6006))
    assert parse_service_ports(format_service_ports(ports)) == ports
    with pytest.raises(ServicePortError):
        format_service_ports((*ports, ServicePort("jupyter", "tcp", 9000)))


def test_image_labels_and_the_legacy_prefix() -> None:
    assert image_service_ports({}) == ()
    assert image_service_ports({LABEL_SERVICE_PORTS: "j:http:8080"}) == (
        ServicePort("j", "http", 8080),
    )
    assert image_service_ports({LEGACY_LABEL_SERVICE_PORTS: "j:tcp:9000"}) == (
        ServicePort("j", "tcp", 9000),
    )


def test_api_entries_round_trip() -> None:
    port = ServicePort("jupyter", "http", 8080)
    entry = port.to_api()
    assert entry == {
        "name": "jupyter",
        "protocol": "http",
        "container_port": 8080,
        "host_port": None,
    }
    assert service_ports_from_api([entry]) == (port,)
    assert find_service([port], "jupyter") is port
    assert find_service([port], "nope") is None
