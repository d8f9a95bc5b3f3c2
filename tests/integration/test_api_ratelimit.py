"""Spec 3: per-keypair and per-address rolling windows, as seen over HTTP."""

from __future__ import annotations

import pytest
import trio

from crucible.keypairs import KeypairRepository, NewKeypair
from testlib.problems import assert_problem
from testlib.server import Harness
from testlib.signing import Credentials

TIMEOUT = 10


async def test_keypair_limit_exhaustion(manager: Harness, keypairs: KeypairRepository) -> None:
    kp = await keypairs.create(NewKeypair("hasty@test", rate_limit=3))
    creds = Credentials(kp.access_key, kp.secret_key)
    with trio.fail_after(TIMEOUT):
        for remaining in (2, 1, 0):
            response = await manager.client.get("/auth/test", creds=creds)
            assert response.status_code == 200, response.text
            assert response.headers["X-RateLimit-Limit"] == "3"
            assert response.headers["X-RateLimit-Remaining"] == str(remaining)
        for _ in range(2):
            response = await manager.client.get("/auth/test", creds=creds)
            assert_problem(response, 429, "rate-limit-exceeded")
            assert response.headers["X-RateLimit-Limit"] == "3"
            assert response.headers["X-RateLimit-Remaining"] == "0"
            assert response.headers["X-RateLimit-Window"] == "900"
        # Another tenant is unaffected.
        other = await manager.client.get("/auth/test")
    assert other.status_code == 200


@pytest.mark.manager_config({"ratelimit": {"public_limit": 3}})
async def test_public_limit_per_address(manager: Harness) -> None:
    with trio.fail_after(TIMEOUT):
        for path in ("/", "/v4", "/manager/status"):
            response = await manager.client.get(path, sign=False)
            assert response.status_code == 200, response.text
        response = await manager.client.get("/", sign=False)
        assert_problem(response, 429, "rate-limit-exceeded")
        assert response.headers["X-RateLimit-Remaining"] == "0"
        # Authenticated requests are counted per key, not per address.
        signed = await manager.client.get("/auth/test")
    assert signed.status_code == 200, signed.text


@pytest.mark.manager_config({"ratelimit": {"public_limit": 2}})
async def test_failed_authentication_counts_against_the_address(manager: Harness) -> None:
    forged = Credentials(manager.user.access_key, "x" * 40)
    with trio.fail_after(TIMEOUT):
        for _ in range(2):
            response = await manager.client.get("/auth/test", creds=forged)
            assert_problem(response, 401, "auth-failed")
        response = await manager.client.get("/auth/test", creds=forged)
        assert_problem(response, 429, "rate-limit-exceeded")
        # The victim's own limit was never touched by the forgeries.
        genuine = await manager.client.get("/auth/test")
    assert genuine.status_code == 200, genuine.text
    assert genuine.headers["X-RateLimit-Remaining"] == "4999"
