"""Service ports (spec 4.2, 9) as the official client 18.12.3 reads them: the SDK's
``Kernel.service_ports`` and the app names ``backend.ai start`` prints."""

from __future__ import annotations

import os
import secrets

import pytest

from ._support import REFERENCE_VENV, RunningCrucible, cli, run_probe

if not (REFERENCE_VENV / "bin" / "backend.ai").exists():
    pytest.skip("the reference client is not installed", allow_module_level=True)

pytestmark = pytest.mark.compat

#: The image under test (see tests/integration/sessions/test_service_ports.py).
LANG = os.environ.get("CRUCIBLE_TEST_JUPYTER_LANG", "python")
JUPYTER = {"name": "jupyter", "protocol": "http", "container_port": 8080, "host_port": None}


def test_the_sdk_reads_the_service_ports(crucible_server: RunningCrucible) -> None:
    report = run_probe(crucible_server, "create-session", LANG)
    assert report["status"] == 201, report
    assert report["body"]["servicePorts"] == [JUPYTER]
    assert cli(crucible_server, "terminate", "compat-probe").returncode == 0


def test_start_prints_the_app_services(crucible_server: RunningCrucible) -> None:
    name = "compat" + secrets.token_hex(4)
    started = cli(crucible_server, "start", "-t", name, LANG)
    assert started.returncode == 0, started.stderr
    output = started.stdout + started.stderr
    assert "This session provides the following app services: jupyter" in output
    assert cli(crucible_server, "terminate", name).returncode == 0
