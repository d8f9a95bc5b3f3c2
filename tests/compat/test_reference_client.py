"""The official client SDK 18.12.3 (and its `backend.ai` CLI) against a live `crucible up`.

Spec 2 (signing and its failures), 1.2 (version probe), 1.7 (problem bodies the CLI can
print) and 10.3 (``/auth/test``), checked with the client's own code rather than with our
reading of it.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from ._support import (
    REFERENCE_VENV,
    RunningCrucible,
    reference_client_env,
    run_probe,
    run_reference,
)

if not (REFERENCE_VENV / "bin" / "backend.ai").exists():
    pytest.skip(
        f"the reference client is not installed at {REFERENCE_VENV} "
        "(scripts/bootstrap installs it; scripts/test always does)",
        allow_module_level=True,
    )

pytestmark = pytest.mark.compat

PROBLEM = "https://api.backend.ai/probs/"
#: Far outside the 15-minute window of spec 2.5, in either direction.
STALE_SECONDS = 20 * 60


def wrong_secret(server: RunningCrucible) -> str:
    """A well-formed secret key (40 URL-safe characters) that is not the server's."""
    while (key := secrets.token_urlsafe(30)) == server.secret_key:
        pass
    return key


def assert_problem(report: dict[str, Any], status: int, type_suffix: str) -> dict[str, Any]:
    """The SDK raised BackendAPIError carrying an RFC 7807 body the CLI can print."""
    assert report["status"] == status, report
    problem = report.get("problem")
    assert isinstance(problem, dict), report
    assert problem.get("type") == PROBLEM + type_suffix, problem
    # The CLI's error printer indexes `title` unconditionally (spec 1.7).
    assert isinstance(problem.get("title"), str) and problem["title"], problem
    return problem


# -- (a) signed requests succeed -----------------------------------------------------------


def test_signed_auth_test_is_authorized(crucible_server: RunningCrucible) -> None:
    report = run_probe(crucible_server, "request", "GET", "/auth/test")
    assert report["status"] == 200, report
    assert report["body"]["authorized"] == "yes"


def test_signed_version_probe(crucible_server: RunningCrucible) -> None:
    # Kernel.hello() is the exact call the CLI makes before `run`/`ps` to pick its mode.
    report = run_probe(crucible_server, "hello")
    assert report["body"] == {"version": "v4.20181215"}


# -- (b) a wrong secret key ----------------------------------------------------------------


def test_wrong_secret_key_is_auth_failed(crucible_server: RunningCrucible) -> None:
    report = run_probe(
        crucible_server, "request", "GET", "/auth/test", secret_key=wrong_secret(crucible_server)
    )
    assert_problem(report, 401, "auth-failed")


def test_cli_prints_the_servers_title_for_a_wrong_secret_key(
    crucible_server: RunningCrucible,
) -> None:
    secret = wrong_secret(crucible_server)
    # What the SDK gets for the CLI's own request (Kernel.get_or_create → POST
    # /kernel/create), so the CLI's output can be held against the server's exact title.
    report = run_probe(crucible_server, "create-session", "python", secret_key=secret)
    problem = assert_problem(report, 401, "auth-failed")

    cli = run_reference(
        ["backend.ai", "start", "python"],
        reference_client_env(crucible_server, secret_key=secret),
    )
    output = cli.stdout + cli.stderr
    assert cli.returncode != 0, output
    assert "Traceback" not in output, output
    assert "401" in output, output
    assert problem["title"] in output, output


# -- (c) a stale Date ----------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-STALE_SECONDS, STALE_SECONDS], ids=["past", "future"])
def test_stale_date_is_invalid_auth_params(crucible_server: RunningCrucible, offset: int) -> None:
    # The SDK signs the shifted date itself: the signature is valid, only the clock is off,
    # so only the skew check (spec 2.5 step 2) can reject it.
    report = run_probe(
        crucible_server, "request", "GET", "/auth/test", "--date-offset", str(offset)
    )
    assert_problem(report, 400, "invalid-auth-params")


def test_date_within_the_window_is_accepted(crucible_server: RunningCrucible) -> None:
    # The counterpart of the stale-date tests: a clock 10 minutes off is still in time.
    report = run_probe(crucible_server, "request", "GET", "/auth/test", "--date-offset", "-600")
    assert report["status"] == 200, report
