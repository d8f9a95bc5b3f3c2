"""Spec 2.2-2.4: the signing algorithm, the Authorization grammar, dates and content types."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crucible import auth

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ACCESS = "AKIAIOSFODNN7EXAMPLE"
RAW_DATE = "2018-12-20T01:23:45.123456+00:00"
HOST = "127.0.0.1:8081"
VERSION = "v4.20181215"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def vector_input(method: str, rel_url: str, content_type: str) -> auth.SigningInput:
    return auth.SigningInput(method, rel_url, RAW_DATE, HOST, content_type, VERSION)


def test_signing_key_vector() -> None:
    key = auth.signing_key(SECRET, auth.parse_request_date(RAW_DATE), HOST)
    assert key.hex() == "0ed15fc6f5ac961c47ba21b088a29fb25532aa121aa66e843b4bd861dfaa7485"


def test_string_to_sign_vector() -> None:
    expected = "\n".join(
        [
            "GET",
            "/folders",
            RAW_DATE,
            "host:127.0.0.1:8081",
            "content-type:text/plain",
            "x-backendai-version:v4.20181215",
            EMPTY_SHA256,
        ]
    )
    assert vector_input("GET", "/folders", "text/plain").string_to_sign("sha256") == expected


@pytest.mark.parametrize(
    ("method", "rel_url", "header", "signature"),
    [
        ("GET", "/folders", "text/plain",
         "625bb3773acccda525f1312a21887c8bea6a06862ddd55a8edbb8e1637017f0a"),
        ("POST", "/kernel/create", "application/json",
         "3b8c58c52c8691f1f96ab50e509494c17d55357cf5273ec221017a7ef0375caa"),
        ("GET", "/stream/kernel/mysess/pty", None,
         "5eaa3e1b56e4aaca14f9b29d6f2fb97e4d5766b57fc76beed4581c46985c8a5d"),
        ("POST", "/kernel/mysess/upload", "multipart/form-data; boundary=----abc",
         "dae126516203a044ca6437d498ae452db6b33d06c689cb19e77b632eb4672137"),
        ("GET", "/stream/kernel/my%20sess/httpproxy?app=jupyter+lab", None,
         "9eba5d8b0e308b68f6df40badef0058b6560891b8fed634229e057cf27f405dd"),
    ],
)
def test_signature_vectors(
    method: str, rel_url: str, header: str | None, signature: str
) -> None:
    data = vector_input(method, rel_url, auth.normalize_content_type(header))
    date = auth.parse_request_date(RAW_DATE)
    # Since v4.20181215 the body never matters (spec 2.3 step 2).
    for body in (b"", b'{"lang": "python:3.6"}', b"--multipart--"):
        assert auth.sign(SECRET, date, data, body=body) == signature


def test_vector_authorization_header_round_trip() -> None:
    value = (
        "BackendAI signMethod=HMAC-SHA256, credential="
        f"{ACCESS}:625bb3773acccda525f1312a21887c8bea6a06862ddd55a8edbb8e1637017f0a"
    )
    parsed = auth.parse_authorization(value)
    assert parsed == auth.AuthorizationHeader(
        "HMAC-SHA256", "sha256", ACCESS,
        "625bb3773acccda525f1312a21887c8bea6a06862ddd55a8edbb8e1637017f0a",
    )


def test_signing_key_uses_the_date_in_its_own_zone() -> None:
    # 01:23 at +09:00 is still the 19th in UTC; the client signs the date it wrote.
    local = auth.parse_request_date("2018-12-20T01:23:45+09:00")
    utc = auth.parse_request_date("2018-12-20T01:23:45+00:00")
    assert auth.signing_key(SECRET, local, HOST) == auth.signing_key(SECRET, utc, HOST)
    other_day = auth.parse_request_date("2018-12-19T16:23:45+00:00")
    assert auth.signing_key(SECRET, local, HOST) != auth.signing_key(SECRET, other_day, HOST)


def test_signatures_match_is_exact() -> None:
    assert auth.signatures_match("ab" * 32, "ab" * 32)
    assert not auth.signatures_match("ab" * 32, "ab" * 31 + "ac")
    assert not auth.signatures_match("ab" * 32, "")


# -- body hash ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v4.20181215", "v4.20190315", "v5.20200101"])
def test_body_hash_is_empty_since_v4(version: str) -> None:
    assert auth.body_hash("sha256", version, b"anything") == EMPTY_SHA256


@pytest.mark.parametrize("version", ["v1.20160915", "v2.20170315", "v3.20170615"])
def test_body_hash_of_old_versions_covers_the_body(version: str) -> None:
    body = b'{"lang": "python3"}'
    assert auth.body_hash("sha256", version, body) == hashlib.sha256(body).hexdigest()
    assert auth.body_hash("sha256", version) == EMPTY_SHA256
    assert auth.body_hash("md5", version, body) == hashlib.md5(body).hexdigest()


def test_old_version_signature_depends_on_body() -> None:
    data = auth.SigningInput("POST", "/kernel/create", RAW_DATE, HOST, "application/json",
                             "v3.20170615")
    date = auth.parse_request_date(RAW_DATE)
    assert auth.sign(SECRET, date, data, body=b"{}") != auth.sign(SECRET, date, data, body=b"")


def test_legacy_version_header_line() -> None:
    data = auth.SigningInput("GET", "/", RAW_DATE, HOST, "text/plain", VERSION,
                             "x-sorna-version")
    assert "\nx-sorna-version:v4.20181215\n" in data.string_to_sign("sha256")


# -- Authorization grammar ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "hash_name", "access_key", "signature"),
    [
        ("BackendAI signMethod=HMAC-SHA256, credential=AK:ABCDEF", "sha256", "AK", "abcdef"),
        ("Sorna signMethod=HMAC-SHA1, credential=AK:00", "sha1", "AK", "00"),
        ("BackendAI signMethod=hmac-sha512,credential=AK:ff", "sha512", "AK", "ff"),
        ("  BackendAI  credential = AK:ff , signMethod = HMAC-SHA256 ", "sha256", "AK", "ff"),
        ("BackendAI signMethod=HMAC-SHA256, credential=AK:a:b", "sha256", "AK", "a:b"),
        ("BackendAI signMethod=HMAC-SHA256, credential=AK:ff, extra=1", "sha256", "AK", "ff"),
    ],
)
def test_parse_authorization(value: str, hash_name: str, access_key: str, signature: str) -> None:
    parsed = auth.parse_authorization(value)
    assert (parsed.hash_name, parsed.access_key, parsed.signature) == (
        hash_name, access_key, signature,
    )


@pytest.mark.parametrize(
    "value",
    [
        "",
        "BackendAI",
        "BackendAI ",
        "Basic dXNlcjpwYXNz",
        "backendai signMethod=HMAC-SHA256, credential=AK:ff",
        "BackendAI signMethod=HMAC-SHA256",
        "BackendAI credential=AK:ff",
        "BackendAI signMethod=HMAC-SHA256, credential",
        "BackendAI signMethod=HMAC-SHA256, credential=AK",
        "BackendAI signMethod=HMAC-SHA256, credential=:ff",
        "BackendAI signMethod=HMAC-SHA256, credential=AK:",
        "BackendAI signMethod=SHA256, credential=AK:ff",
        "BackendAI signMethod=HMAC, credential=AK:ff",
        "BackendAI signMethod=HMAC-, credential=AK:ff",
        "BackendAI signMethod=RSA-SHA256, credential=AK:ff",
    ],
)
def test_parse_authorization_rejects(value: str) -> None:
    with pytest.raises(auth.MalformedAuthorization):
        auth.parse_authorization(value)


@given(st.text(max_size=300))
def test_parse_authorization_never_crashes(value: str) -> None:
    try:
        auth.parse_authorization(value)
    except auth.MalformedAuthorization:
        pass


@pytest.mark.parametrize(
    ("name", "ok"),
    [("sha256", True), ("SHA256", True), ("sha1", True), ("sha512", True), ("md5", True),
     ("shake_128", False), ("foo", False), ("", False)],
)
def test_supported_hashes(name: str, ok: bool) -> None:
    assert auth.is_supported_hash(name) is ok


@pytest.mark.parametrize(
    ("version", "ok"),
    [("v4.20181215", True), ("v10.20300101", True), ("v4.2018121", False), ("4.20181215", False),
     ("v4", False), ("v4.20181215 ", False), ("", False), ("v4.2018121x", False)],
)
def test_version_format(version: str, ok: bool) -> None:
    assert auth.is_well_formed_version(version) is ok


# -- dates ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2018-12-20T01:23:45.123456+00:00", datetime(2018, 12, 20, 1, 23, 45, 123456, UTC)),
        ("2018-12-20T01:23:45+00:00", datetime(2018, 12, 20, 1, 23, 45, tzinfo=UTC)),
        ("2018-12-20T01:23:45", datetime(2018, 12, 20, 1, 23, 45, tzinfo=UTC)),
        ("2018-12-20T01:23:45Z", datetime(2018, 12, 20, 1, 23, 45, tzinfo=UTC)),
        (
            "2018-12-20T10:23:45.5+09:00",
            datetime(2018, 12, 20, 10, 23, 45, 500000, timezone(timedelta(hours=9))),
        ),
        ("Thu, 20 Dec 2018 01:23:45 GMT", datetime(2018, 12, 20, 1, 23, 45, tzinfo=UTC)),
        ("20181220T012345Z", datetime(2018, 12, 20, 1, 23, 45, tzinfo=UTC)),
        ("20160930T01:23:45Z", datetime(2016, 9, 30, 1, 23, 45, tzinfo=UTC)),
        ("  2018-12-20T01:23:45Z  ", datetime(2018, 12, 20, 1, 23, 45, tzinfo=UTC)),
    ],
)
def test_parse_request_date(raw: str, expected: datetime) -> None:
    parsed = auth.parse_request_date(raw)
    assert parsed == expected
    assert parsed.tzinfo is not None


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "garbage", "2018-13-45T99:99:99", "20181340T012345Z", "x" * 65,
     "2018-12-20T01:23:45" + " " * 60 + "Z", "99999999999999999999", "Thu, 32 Dec 2018"],
)
def test_parse_request_date_rejects(raw: str) -> None:
    with pytest.raises(ValueError):
        auth.parse_request_date(raw)


@given(st.text(max_size=100))
def test_parse_request_date_only_raises_value_error(raw: str) -> None:
    try:
        parsed = auth.parse_request_date(raw)
    except ValueError:
        return
    assert parsed.tzinfo is not None


# -- content type ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "line"),
    [
        (None, "application/octet-stream"),
        ("", "application/octet-stream"),
        (";charset=utf-8", "application/octet-stream"),
        ("application/json", "application/json"),
        ("Application/JSON; charset=UTF-8", "application/json"),
        ("multipart/form-data; boundary=----abc", "multipart/form-data"),
        ("  text/plain  ", "text/plain"),
    ],
)
def test_normalize_content_type(header: str | None, line: str) -> None:
    assert auth.normalize_content_type(header) == line


# -- key generators -------------------------------------------------------------------------


def test_access_key_format() -> None:
    keys = {auth.generate_access_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert re.fullmatch(r"AKIA[A-Z2-7]{16}", key), key


def test_secret_key_format() -> None:
    keys = {auth.generate_secret_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert re.fullmatch(r"[A-Za-z0-9_-]{40}", key), key
