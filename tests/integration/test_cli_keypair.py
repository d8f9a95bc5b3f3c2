"""``crucible keypair ...`` against the session's PostgreSQL.

These tests are synchronous on purpose: the CLI calls `trio.run` itself, which cannot
nest inside a trio test. They use their own user ids instead of the per-test TRUNCATE.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from crucible.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def list_keypairs(capsys: pytest.CaptureFixture[str], config: Path, user: str) -> list[dict]:  # type: ignore[type-arg]
    code, out, _ = run_cli(
        capsys, "keypair", "list", "--config", str(config), "--user-id", user, "--json"
    )
    assert code == 0
    result: list[dict] = json.loads(out)  # type: ignore[type-arg]
    return result


def test_keypair_lifecycle(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    user = f"cli-{secrets.token_hex(4)}@test"
    code, out, err = run_cli(
        capsys, "keypair", "create", "--config", str(config_file), user,
        "--rate-limit", "42", "--json",
    )
    assert code == 0, err
    created = json.loads(out)
    assert created["user_id"] == user and created["rate_limit"] == 42
    assert len(created["access_key"]) == 20 and len(created["secret_key"]) == 40
    assert created["is_active"] and not created["is_admin"]
    ak = created["access_key"]

    listed = list_keypairs(capsys, config_file, user)
    assert [kp["access_key"] for kp in listed] == [ak]
    assert "secret_key" not in listed[0]

    code, out, err = run_cli(capsys, "keypair", "deactivate", "--config", str(config_file), ak)
    assert code == 0, err
    assert f"{ak} is now inactive" in out
    assert not list_keypairs(capsys, config_file, user)[0]["is_active"]

    code, out, err = run_cli(capsys, "keypair", "activate", "--config", str(config_file), ak)
    assert code == 0, err
    assert list_keypairs(capsys, config_file, user)[0]["is_active"]


def test_keypair_create_plain_output(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = f"cli-{secrets.token_hex(4)}@test"
    code, out, err = run_cli(
        capsys, "keypair", "create", "--config", str(config_file), user, "--admin"
    )
    assert code == 0, err
    lines = dict(line.split("=", 1) for line in out.splitlines())
    assert set(lines) == {"BACKEND_ACCESS_KEY", "BACKEND_SECRET_KEY"}
    listed = list_keypairs(capsys, config_file, user)
    assert listed[0]["access_key"] == lines["BACKEND_ACCESS_KEY"] and listed[0]["is_admin"]

    code, out, _ = run_cli(capsys, "keypair", "list", "--config", str(config_file))
    assert code == 0
    assert lines["BACKEND_ACCESS_KEY"] in out
    assert lines["BACKEND_SECRET_KEY"] not in out


def test_keypair_deactivate_unknown(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        capsys, "keypair", "deactivate", "--config", str(config_file), "AKIANOSUCHKEY0000000"
    )
    assert code == 1
    assert "no keypair AKIANOSUCHKEY0000000" in err
    assert "Traceback" not in err
