"""App tunnels (spec 5.5) through the official client's own ``WSProxy``, against a live
``crucible up``, to an HTTP server inside a session of the tunnel test image."""

from __future__ import annotations

import secrets
from pathlib import Path

from testlib.tunnel_image import START_SERVICES, ensure_tunnel_image

from ._support import RunningCrucible, cli, reference_client_env, run_reference

PROBE = Path(__file__).with_name("wsproxy_probe.py")


def test_the_official_wsproxy_tunnels_http(crucible_server: RunningCrucible) -> None:
    image = ensure_tunnel_image()
    token = "wsp" + secrets.token_hex(4)
    started = cli(
        crucible_server,
        "run",
        "-t",
        token,
        image,
        "-c",
        START_SERVICES + "\nopen('/home/work/page.txt', 'w').write('through wsproxy')",
    )
    assert "services up" in started.stdout, started.stdout + started.stderr
    try:
        env = reference_client_env(crucible_server)
        result = run_reference(["python", str(PROBE), token, "web", "/page.txt"], env)
        assert result.returncode == 0, result.stderr
        answers = result.json()["answers"]
        assert len(answers) == 2
        assert all(a.startswith("HTTP/1.0 200") and a.endswith("through wsproxy") for a in answers)
        # An undeclared app: refused at the handshake (404), nothing is tunnelled.
        result = run_reference(["python", str(PROBE), token, "nosuch", "/"], env)
        assert result.returncode == 0, result.stderr
        assert not any(a.startswith("HTTP/1.0 200") for a in result.json()["answers"])
    finally:
        cli(crucible_server, "terminate", "-s", token)
