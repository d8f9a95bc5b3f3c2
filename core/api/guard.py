"""Decorators that put every endpoint behind the right gate.

``@public`` (rate-limited per client IP, signatures ignored), ``@authenticated``
(spec 2.5, in its exact order, then the keypair's rate limit), ``@admin_only`` and
``@requires_running`` (spec 1.8). The order of checks is the spec's: a failed check
earlier in the list decides the error.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from quart import g, has_websocket_context, request, websocket

from crucible import auth, errors
from crucible.api.body import raw_body
from crucible.api.context import manager_context
from crucible.api.middleware import RequestTarget
from crucible.keypairs import Keypair
from crucible.manager.status import ManagerStatus

P = ParamSpec("P")
R = TypeVar("R")
View = Callable[P, Awaitable[R]]

_DATE_HEADERS = ("Date", "X-BackendAI-Date", "X-Sorna-Date")
_VERSION_HEADERS = (
    ("X-BackendAI-Version", "x-backendai-version"),
    ("X-Sorna-Version", "x-sorna-version"),
)


def _current() -> Any:
    return websocket if has_websocket_context() else request


def _client_key() -> str:
    return "ip:" + (_current().remote_addr or "unknown")


def _count_public_request() -> None:
    ctx = manager_context()
    state = ctx.rate_limiter.hit(_client_key(), ctx.config.ratelimit.public_limit)
    if not state.allowed:
        raise errors.RateLimitExceeded(
            "Too many requests from this address.", limit=state.limit, window=state.window
        )


def _host_candidates(host: str, scheme: str) -> list[str]:
    """The Host as received, then the same with the default port added or removed.

    The client signs its configured endpoint's authority, which may spell out a
    default port that the HTTP stack then leaves out of ``Host`` (spec 2.3).
    """
    default_port = "443" if scheme in ("https", "wss") else "80"
    if host.startswith("["):  # an IPv6 literal: [::1]:8081
        close = host.find("]")
        name, port = host[: close + 1], host[close + 2 :]
    else:
        name, _, port = host.partition(":")
    if not port:
        return [host, f"{host}:{default_port}"]
    if port == default_port:
        return [host, name]
    return [host]


async def verify_request(*, admin: bool = False) -> Keypair:
    """Authenticate the current request or raise the problem spec 2.5 prescribes."""
    ctx = manager_context()
    req = _current()
    headers = req.headers
    cap = ctx.config.manager.max_auth_header_bytes

    raw_date = next((headers[h] for h in _DATE_HEADERS if h in headers), None)
    if raw_date is None:
        raise errors.InvalidAuthParameters("Date/time sync error: the Date header is missing.")
    try:
        if len(raw_date) > cap:
            raise ValueError("over-long")
        date = auth.parse_request_date(raw_date)
    except ValueError:
        raise errors.InvalidAuthParameters(
            "Date/time sync error: the Date header is malformed."
        ) from None
    skew = abs((datetime.now(UTC) - date).total_seconds())
    if skew > ctx.config.manager.clock_skew_seconds:
        raise errors.InvalidAuthParameters(
            f"Date/time sync error: the request date is {int(skew)} s away from server time."
        )

    header = headers.get("Authorization")
    if not header:
        raise errors.AuthFailed("The Authorization header is missing.")
    if len(header) > cap:
        raise errors.InvalidAuthParameters("The Authorization header is too long.")
    try:
        authz = auth.parse_authorization(header)
    except auth.MalformedAuthorization as exc:
        raise errors.InvalidAuthParameters(f"Malformed Authorization header: {exc}.") from None

    keypair = await ctx.keypair_cache.get(authz.access_key)
    if keypair is None:
        raise errors.AuthFailed("Unknown access key.")

    version, version_line = next(
        ((headers[name], line) for name, line in _VERSION_HEADERS if name in headers), (None, "")
    )
    if version is None or len(version) > cap or not auth.is_well_formed_version(version):
        raise errors.InvalidAuthParameters(
            "The X-BackendAI-Version header is missing or malformed."
        )
    if not auth.is_supported_hash(authz.hash_name):
        raise errors.InvalidAuthParameters(f"Unsupported signMethod {authz.sign_method}.")

    target: RequestTarget = req.scope["crucible"]
    host = ctx.config.manager.public_host or headers.get("Host", "")
    content_type = auth.normalize_content_type(headers.get("Content-Type"))
    body = b""
    if version < auth.EMPTY_BODY_HASH_SINCE and content_type != "multipart/form-data":
        # Before v4 the body was hashed too (spec 2.3); WebSocket handshakes have none.
        if not has_websocket_context():
            body = await raw_body()
    if not _signature_matches(
        keypair.secret_key,
        date,
        authz,
        target,
        host,
        raw_date,
        content_type,
        version,
        version_line,
        body,
        req.scope,
    ):
        raise errors.AuthFailed("Credential/signature mismatch.")
    if not keypair.is_active:
        raise errors.AuthFailed("The keypair is inactive.")
    if admin and not keypair.is_admin:
        raise errors.AuthFailed("This endpoint needs an administrator keypair.")
    return keypair


def _signature_matches(
    secret_key: str,
    date: datetime,
    authz: auth.AuthorizationHeader,
    target: RequestTarget,
    host: str,
    raw_date: str,
    content_type: str,
    version: str,
    version_line: str,
    body: bytes,
    scope: dict[str, Any],
) -> bool:
    for candidate_host in _host_candidates(host, scope.get("scheme", "http")):
        for method in target.sign_methods:
            data = auth.SigningInput(
                method,
                target.raw_target,
                raw_date,
                candidate_host,
                content_type,
                version,
                version_line,
            )
            expected = auth.sign(secret_key, date, data, authz.hash_name, body)
            if auth.signatures_match(expected, authz.signature):
                return True
    return False


async def authenticate(*, admin: bool = False) -> Keypair:
    """Verify, count and record the current request; the keypair is also put on `g`."""
    ctx = manager_context()
    try:
        keypair = await verify_request(admin=admin)
    except errors.ProblemError:
        # Failed attempts count against the client's address, not the claimed key,
        # so nobody can exhaust another tenant's limit by sending bad signatures.
        _count_public_request()
        raise
    state = ctx.rate_limiter.hit("ak:" + keypair.access_key, keypair.rate_limit)
    g.ratelimit_headers = state.headers()
    if not state.allowed:
        raise errors.RateLimitExceeded(limit=state.limit, window=state.window)
    ctx.keypair_cache.record_use(keypair.access_key)
    g.keypair = keypair
    return keypair


def count_message(keypair: Keypair) -> None:
    """Count one client→server WebSocket message against the keypair (spec 3, 5.6)."""
    ctx = manager_context()
    state = ctx.rate_limiter.hit("ak:" + keypair.access_key, keypair.rate_limit)
    if not state.allowed:
        raise errors.RateLimitExceeded(limit=state.limit, window=state.window)


def public(view: View[P, R]) -> View[P, R]:
    """No authentication (any Authorization header is ignored); rate-limited per IP."""

    @functools.wraps(view)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        _count_public_request()
        return await view(*args, **kwargs)

    return wrapper


def authenticated(view: View[P, R]) -> View[P, R]:
    @functools.wraps(view)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        await authenticate()
        return await view(*args, **kwargs)

    return wrapper


def admin_only(view: View[P, R]) -> View[P, R]:
    @functools.wraps(view)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        await authenticate(admin=True)
        return await view(*args, **kwargs)

    return wrapper


def requires_running(view: View[P, R]) -> View[P, R]:
    """Refuse with 503 unless the manager is ``running`` (spec 1.8). Put it inside the
    authentication decorator, so that authentication failures take precedence."""

    @functools.wraps(view)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        status = await manager_context().status.get()
        if status is ManagerStatus.FROZEN:
            raise errors.ServerFrozen()
        if status is not ManagerStatus.RUNNING:
            raise errors.ServiceUnavailable(f"The manager is {status.value}.")
        return await view(*args, **kwargs)

    return wrapper


def current_keypair() -> Keypair:
    keypair: Keypair = g.keypair
    return keypair
