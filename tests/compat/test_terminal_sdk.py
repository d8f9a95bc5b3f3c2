"""The session's terminal (spec 5.3) through the official client SDK's
``Kernel.stream_pty()``, against a live ``crucible up``."""

from __future__ import annotations

import secrets
from pathlib import Path

import psutil

from ._support import RunningCrucible, reference_client_env, run_reference

PROBE = Path(__file__).with_name("pty_probe.py")


def test_the_sdk_drives_a_terminal(crucible_server: RunningCrucible) -> None:
    server = psutil.Process(crucible_server.process.pid)
    before = sum(p.memory_info().rss for p in [server, *server.children(recursive=True)])
    token = "pty" + secrets.token_hex(4)
    result = run_reference(
        ["python", str(PROBE), token], reference_client_env(crucible_server)
    )
    assert result.returncode == 0, result.stderr
    report = result.json()
    after = sum(p.memory_info().rss for p in [server, *server.children(recursive=True)])
    assert report["echo"] and report["shared"] and report["resized"], report
    assert report["interrupted_in"] < 5, report
    assert report["flood_bytes"] > 1 << 20, report  # it did flood
    assert report["keystroke_during_flood"] < 1.0, report
    assert report["restarted"], report
    # Megabytes flowed through; the manager and agent kept at most a few windows.
    assert after - before < 64 << 20, (before, after)
