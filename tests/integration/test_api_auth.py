"""Public endpoints, signed requests and every failure of spec 2.5, in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import trio

from crucible.keypairs import KeypairRepository, NewKeypair
from testlib.problems import assert_problem
from testlib.server import Harness
from testlib.signing import OMIT, Credentials, client_date

TIMEOUT = 10


async def auth_test(manager: Harness, method: str = "GET", **kwargs: Any) -> httpx.Response:
    """The answer to `method /auth/test`, sent as `kwargs` say (`SigningClient.request`)."""
    with trio.fail_after(TIMEOUT):
        return await manager.client.request(method, "/auth/test", **kwargs)


async def authorized(manager: Harness, method: str = "GET", **kwargs: Any) -> None:
    """`method /auth/test`, sent as `kwargs` say, is let in."""
    response = await auth_test(manager, method, **kwargs)
    assert response.status_code == 200, response.text


async def test_root_reports_v4(manager: Harness) -> None:
    with trio.fail_after(TIMEOUT):
        response = await manager.client.get("/", sign=False)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"version": "v4.20181215"}


@pytest.mark.parametrize(
    ("path", "version"),
    [
        ("/v1", "v1.20160915"),
        ("/v2/", "v2.20170315"),
        ("/v3", "v3.20170615"),
        ("/v4", "v4.20181215"),
        ("/v4/", "v4.20181215"),
    ],
)
async def test_version_endpoints(manager: Harness, path: str, version: str) -> None:
    with trio.fail_after(TIMEOUT):
        response = await manager.client.get(path, sign=False)
    assert response.status_code == 200
    assert response.json() == {"version": version}


@pytest.mark.parametrize("path", ["/v5", "/v0", "/v5/auth/test", "/v0/kernel/x", "/v1/folders"])
async def test_unsupported_versions_are_not_found(manager: Harness, path: str) -> None:
    with trio.fail_after(TIMEOUT):
        response = await manager.client.get(path)
    assert_problem(response, 404, "generic-not-found")


async def test_public_endpoints_ignore_garbage_credentials(manager: Harness) -> None:
    # Spec 1.2: public endpoints must not validate what clients attach.
    headers = {"Authorization": "garbage", "Date": "not a date", "X-BackendAI-Version": "?"}
    with trio.fail_after(TIMEOUT):
        for path in ("/", "/v4", "/manager/status"):
            response = await manager.client.get(path, headers=headers)
            assert response.status_code == 200, (path, response.text)


async def test_signed_auth_test(manager: Harness) -> None:
    with trio.fail_after(TIMEOUT):
        response = await manager.client.post("/auth/test", json={"echo": "hi"})
    assert response.status_code == 200, response.text
    assert response.json() == {"authorized": "yes", "echo": "hi"}
    assert response.headers["X-RateLimit-Limit"] == "5000"
    assert response.headers["X-RateLimit-Remaining"] == "4999"
    assert response.headers["X-RateLimit-Window"] == "900"
    assert "X-RateLimit-Reset" not in response.headers
    assert response.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("path", ["/auth", "/auth/test", "/v1/auth/test", "/v3/auth/test",
                                  "/v4/auth"])
async def test_auth_routes_and_legacy_prefixes(manager: Harness, path: str) -> None:
    # The legacy prefix is part of what the client signed (line 2 is the raw target).
    with trio.fail_after(TIMEOUT):
        response = await manager.client.get(path)
    assert response.status_code == 200, response.text
    assert response.json()["authorized"] == "yes"


async def test_signature_covers_query_string(manager: Harness) -> None:
    with trio.fail_after(TIMEOUT):
        good = await manager.client.get("/auth/test?x=a+b%20c")
        assert good.status_code == 200, good.text
        # Signed without the query: the server must see a different string to sign.
        bad = await manager.client.get(
            "/auth/test?x=1",
            headers={"Authorization": (await _authorization_for(manager, "/auth/test"))},
        )
    assert_problem(bad, 401, "auth-failed")


async def _authorization_for(manager: Harness, rel_url: str) -> str:
    from testlib.signing import authorization

    return authorization(
        manager.user,
        method="GET",
        rel_url=rel_url,
        raw_date=client_date(),
        host=manager.client.host,
        content_type="text/plain",
    )


# -- spec 2.5, step by step -----------------------------------------------------------------

NOW = datetime.now(UTC)


async def test_step1_missing_date(manager: Harness) -> None:
    response = await auth_test(manager, headers={"Date": OMIT})
    assert_problem(response, 400, "invalid-auth-params")


@pytest.mark.parametrize("value", ["garbage", "2018-13-45T99:99:99", "", "x" * 2000])
async def test_step1_garbage_date(manager: Harness, value: str) -> None:
    response = await auth_test(manager, headers={"Date": value})
    assert_problem(response, 400, "invalid-auth-params")


@pytest.mark.parametrize("offset", [timedelta(minutes=-16), timedelta(minutes=16),
                                    timedelta(days=-400)])
async def test_step2_stale_date(manager: Harness, offset: timedelta) -> None:
    # Correctly signed with the skewed date: only the clock check can fail.
    response = await auth_test(manager, sign_date=datetime.now(UTC) + offset)
    body = assert_problem(response, 400, "invalid-auth-params")
    assert "sync" in body["detail"].lower()


@pytest.mark.parametrize("offset", [timedelta(minutes=-14), timedelta(minutes=14)])
async def test_step2_skew_within_limit(manager: Harness, offset: timedelta) -> None:
    await authorized(manager, sign_date=datetime.now(UTC) + offset)


async def test_x_backendai_date_fallback(manager: Harness) -> None:
    now = datetime.now(UTC)
    await authorized(
        manager, sign_date=now, headers={"Date": OMIT, "X-BackendAI-Date": client_date(now)}
    )


async def test_date_header_wins_over_x_backendai_date(manager: Harness) -> None:
    await authorized(manager, headers={"X-BackendAI-Date": "garbage"})


@pytest.mark.parametrize(
    "raw",
    [
        format_datetime(datetime.now(UTC).replace(microsecond=0), usegmt=True),
        datetime.now(UTC).strftime("%Y%m%dT%H:%M:%SZ"),
        datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        datetime.now(UTC).replace(tzinfo=None).isoformat(),
    ],
    ids=["rfc1123", "compact-colons", "compact", "naive-iso"],
)
async def test_other_date_formats(manager: Harness, raw: str) -> None:
    await authorized(manager, raw_date=raw)


async def test_step3_missing_authorization(manager: Harness) -> None:
    response = await auth_test(manager, sign=False)
    assert_problem(response, 401, "auth-failed")


@pytest.mark.parametrize(
    "value",
    [
        "BackendAI",
        "Bearer abc",
        "BackendAI signMethod=HMAC-SHA256",
        "BackendAI credential=AK:SIG",
        "BackendAI signMethod=HMAC-SHA256, credential=AKIANOCOLON",
        "BackendAI signMethod=SHA256, credential=AK:SIG",
        "BackendAI signMethod, credential",
        "BackendAI signMethod=HMAC-SHA256, credential=" + "A" * 2000 + ":00",
    ],
)
async def test_step4_malformed_authorization(manager: Harness, value: str) -> None:
    response = await auth_test(manager, headers={"Authorization": value})
    assert_problem(response, 400, "invalid-auth-params")


async def test_step5_unknown_access_key(manager: Harness) -> None:
    stranger = Credentials("AKIAUNKNOWNUNKNOWN00", manager.user.secret_key)
    response = await auth_test(manager, creds=stranger)
    assert_problem(response, 401, "auth-failed")


@pytest.mark.parametrize(
    "headers",
    [
        {"X-BackendAI-Version": OMIT},
        {"X-BackendAI-Version": "4.20181215"},
        {"X-BackendAI-Version": "v4"},
        {"X-BackendAI-Version": "v4.2018121"},
        {"X-BackendAI-Version": "v4.20181215" + "0" * 2000},
    ],
)
async def test_step6_missing_or_malformed_version(
    manager: Harness, headers: dict[str, object]
) -> None:
    response = await auth_test(manager, headers=headers)
    assert_problem(response, 400, "invalid-auth-params")


async def test_step6_legacy_sorna_version_header(manager: Harness) -> None:
    from crucible import auth

    raw_date = client_date()
    data = auth.SigningInput(
        "GET", "/auth/test", raw_date, manager.client.host, "text/plain", "v4.20181215",
        "x-sorna-version",
    )
    signature = auth.sign(manager.user.secret_key, auth.parse_request_date(raw_date), data)
    headers = {
        "Date": raw_date,
        "X-BackendAI-Version": OMIT,
        "X-Sorna-Version": "v4.20181215",
        "Authorization": "BackendAI signMethod=HMAC-SHA256, "
        f"credential={manager.user.access_key}:{signature}",
    }
    await authorized(manager, raw_date=raw_date, headers=headers)


@pytest.mark.parametrize("method", ["HMAC-FOO", "HMAC-SHAKE_128", "HMAC-"])
async def test_step6_unsupported_sign_method(manager: Harness, method: str) -> None:
    value = f"BackendAI signMethod={method}, credential={manager.user.access_key}:00ff"
    response = await auth_test(manager, headers={"Authorization": value})
    # "HMAC-" has no hash at all: malformed (step 4); the others name an unknown hash.
    assert_problem(response, 400, "invalid-auth-params")


async def test_other_guaranteed_hash_is_accepted(manager: Harness) -> None:
    from testlib.signing import authorization

    raw_date = client_date()
    value = authorization(
        manager.user, method="GET", rel_url="/auth/test", raw_date=raw_date,
        host=manager.client.host, content_type="text/plain", hash_name="sha512",
    )
    await authorized(manager, raw_date=raw_date, headers={"Authorization": value})


@pytest.mark.parametrize(
    "tamper",
    [
        {"Authorization": "BackendAI signMethod=HMAC-SHA256, credential={ak}:" + "0" * 64},
        {"Content-Type": "application/json"},
        {"X-BackendAI-Version": "v4.20190315"},
        {"Host": "example.com"},
    ],
    ids=["signature", "content-type", "version", "host"],
)
async def test_step7_wrong_signature(manager: Harness, tamper: dict[str, str]) -> None:
    headers = {k: v.format(ak=manager.user.access_key) for k, v in tamper.items()}
    response = await auth_test(manager, headers=headers)
    assert_problem(response, 401, "auth-failed")


async def test_step7_wrong_secret(manager: Harness) -> None:
    forged = Credentials(manager.user.access_key, manager.admin.secret_key)
    response = await auth_test(manager, creds=forged)
    assert_problem(response, 401, "auth-failed")


async def test_step8_inactive_keypair(manager: Harness, keypairs: KeypairRepository) -> None:
    kp = await keypairs.create(NewKeypair("sleeper@test", is_active=False))
    response = await auth_test(manager, creds=Credentials(kp.access_key, kp.secret_key))
    body = assert_problem(response, 401, "auth-failed")
    assert "inactive" in body["detail"]


async def test_step9_non_admin_put_status(manager: Harness) -> None:
    with trio.fail_after(TIMEOUT):
        response = await manager.client.put("/manager/status", json={"status": "frozen"})
        assert_problem(response, 401, "auth-failed")
        status = await manager.client.get("/manager/status")
    assert status.json()["status"] == "running"


@pytest.mark.parametrize(
    ("headers", "status", "type_suffix"),
    [
        # Each row breaks two steps at once; the earlier step must decide the answer.
        ({"Date": "garbage", "Authorization": OMIT}, 400, "invalid-auth-params"),
        ({"Date": OMIT, "Authorization": "Bearer x"}, 400, "invalid-auth-params"),
        ({"Authorization": OMIT, "X-BackendAI-Version": OMIT}, 401, "auth-failed"),
        (
            {"Authorization": "BackendAI x=y", "X-BackendAI-Version": OMIT},
            400,
            "invalid-auth-params",
        ),
        (
            {
                "Authorization": "BackendAI signMethod=HMAC-SHA256, "
                "credential=AKIAUNKNOWNUNKNOWN00:00",
                "X-BackendAI-Version": OMIT,
            },
            401,
            "auth-failed",
        ),
    ],
)
async def test_steps_fail_in_order(
    manager: Harness, headers: dict[str, object], status: int, type_suffix: str
) -> None:
    response = await auth_test(manager, headers=headers)
    assert_problem(response, status, type_suffix)


async def test_stale_date_beats_inactive_key(
    manager: Harness, keypairs: KeypairRepository
) -> None:
    kp = await keypairs.create(NewKeypair("sleeper@test", is_active=False))
    response = await auth_test(
        manager,
        creds=Credentials(kp.access_key, kp.secret_key),
        sign_date=datetime.now(UTC) - timedelta(hours=1),
    )
    assert_problem(response, 400, "invalid-auth-params")


async def test_wrong_signature_on_inactive_key_is_401(
    manager: Harness, keypairs: KeypairRepository
) -> None:
    kp = await keypairs.create(NewKeypair("sleeper@test", is_active=False))
    response = await auth_test(manager, creds=Credentials(kp.access_key, manager.user.secret_key))
    body = assert_problem(response, 401, "auth-failed")
    # The signature is checked first: nobody learns that the key exists but is inactive.
    assert "inactive" not in body["detail"]


# -- methods, REPORT, CORS ------------------------------------------------------------------


async def test_method_override_signed_with_overridden_method(manager: Harness) -> None:
    with trio.fail_after(TIMEOUT):
        response = await manager.as_admin().post(
            "/manager/status",
            json={"status": "running"},
            sign_method="PUT",
            headers={"X-Method-Override": "PUT"},
        )
    assert response.status_code == 204, response.text


async def test_method_override_signed_with_transport_method(manager: Harness) -> None:
    await authorized(manager, "POST", headers={"X-Method-Override": "GET"})


async def test_method_override_routes_by_overridden_method(manager: Harness) -> None:
    with trio.fail_after(TIMEOUT):
        response = await manager.client.post(
            "/auth/test", sign_method="DELETE", headers={"X-Method-Override": "DELETE"}
        )
    assert_problem(response, 405, "method-not-allowed")


async def test_report_is_routed_like_get(manager: Harness) -> None:
    with trio.fail_after(TIMEOUT):
        response = await manager.client.request("REPORT", "/auth/test", json={"echo": 1})
        assert response.status_code == 200, response.text
        assert response.json()["echo"] == 1
        status = await manager.client.request("REPORT", "/manager/status")
    assert status.status_code == 200, status.text
    assert status.json()["status"] == "running"


async def test_cors_preflight(manager: Harness) -> None:
    headers = {
        "Origin": "https://example.org",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, x-backendai-version",
    }
    with trio.fail_after(TIMEOUT):
        response = await manager.client.http.options(
            manager.url + "/auth/test", headers=headers
        )
    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "x-backendai-version" in response.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in response.headers


async def test_cors_headers_on_errors_too(manager: Harness) -> None:
    response = await auth_test(manager, sign=False)
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Expose-Headers"] == "*"
