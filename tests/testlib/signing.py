"""A small HTTP client that signs requests exactly as the official client SDK does
(spec 2.3), with knobs to break each part of the signature on purpose."""

from __future__ import annotations

import json as jsonlib
from collections.abc import AsyncIterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import attrs
import httpx

from crucible import API_VERSION, auth

#: Pass as a header value to leave that header out of the request entirely.
OMIT = object()


@attrs.frozen
class Credentials:
    access_key: str
    secret_key: str


def client_date(now: datetime | None = None) -> str:
    """The Date header as the SDK writes it: ISO 8601, fraction only when non-zero."""
    return (now or datetime.now(UTC)).isoformat()


def authorization(
    creds: Credentials,
    *,
    method: str,
    rel_url: str,
    raw_date: str,
    host: str,
    content_type: str,
    version: str = API_VERSION,
    hash_name: str = "sha256",
    body: bytes = b"",
) -> str:
    data = auth.SigningInput(
        method, rel_url, raw_date, host, auth.normalize_content_type(content_type), version
    )
    signature = auth.sign(
        creds.secret_key, auth.parse_request_date(raw_date), data, hash_name, body
    )
    return (
        f"BackendAI signMethod=HMAC-{hash_name.upper()}, "
        f"credential={creds.access_key}:{signature}"
    )


def websocket_headers(creds: Credentials, host: str, rel_url: str) -> list[tuple[bytes, bytes]]:
    """Signed headers of a WebSocket handshake (a GET without a body) to `rel_url`."""
    raw_date = client_date()
    header = authorization(
        creds, method="GET", rel_url=rel_url, raw_date=raw_date, host=host, content_type=""
    )
    return [
        (b"Date", raw_date.encode()),
        (b"X-BackendAI-Version", API_VERSION.encode()),
        (b"Authorization", header.encode()),
    ]


class SigningClient:
    """Talks to one manager; every request is signed unless told otherwise."""

    def __init__(self, base_url: str, creds: Credentials | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.host = urlsplit(self.base_url).netloc
        self.creds = creds
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=10.0)

    async def aclose(self) -> None:
        await self.http.aclose()

    def with_credentials(self, creds: Credentials) -> SigningClient:
        other = SigningClient.__new__(SigningClient)
        other.base_url, other.host, other.creds, other.http = (
            self.base_url, self.host, creds, self.http
        )
        return other

    async def request(
        self,
        method: str,
        rel_url: str,
        *,
        json: Any = None,
        content: bytes | AsyncIterable[bytes] | None = None,
        content_type: str | None = None,
        headers: Mapping[str, Any] | None = None,
        sign: bool = True,
        sign_method: str | None = None,
        sign_date: datetime | None = None,
        raw_date: str | None = None,
        version: str = API_VERSION,
        creds: Credentials | None = None,
    ) -> httpx.Response:
        """Send `method rel_url`; `rel_url` is used verbatim on the request line.

        `sign_method` signs with another method than the one sent (X-Method-Override),
        `sign_date`/`raw_date` choose the Date (a time, or the header text verbatim),
        `headers` overrides or (with `OMIT`) removes any header after signing.
        `content` may be an async iterable: the body is then sent as it yields (chunked),
        and signed as empty, which only pre-v4 versions would notice (spec 2.3).
        """
        body = content
        if json is not None:
            body = jsonlib.dumps(json).encode()
            content_type = content_type or "application/json"
        content_type = content_type or "text/plain"
        raw_date = raw_date or client_date(sign_date)
        final: dict[str, str] = {
            "Date": raw_date,
            "Content-Type": content_type,
            "X-BackendAI-Version": version,
            "User-Agent": "Backend.AI Client for Python 18.12.3",
        }
        creds = creds or self.creds
        if sign and creds is not None:
            final["Authorization"] = authorization(
                creds,
                method=sign_method or method,
                rel_url=rel_url,
                raw_date=raw_date,
                host=self.host,
                content_type=content_type,
                version=version,
                body=body if isinstance(body, bytes) else b"",
            )
        for name, value in (headers or {}).items():
            if value is OMIT:
                final.pop(name, None)
            else:
                final[name] = value
        # httpx would re-encode the URL; a raw target keeps percent-escapes as signed.
        url = httpx.URL(self.base_url + rel_url)
        request = self.http.build_request(method, url, content=body, headers=final)
        if "Content-Type" not in final:
            request.headers.pop("Content-Type", None)
        return await self.http.send(request)

    async def get(self, rel_url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", rel_url, **kwargs)

    async def post(self, rel_url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", rel_url, **kwargs)

    async def put(self, rel_url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", rel_url, **kwargs)
