"""Request signing exactly as the official client SDK 18.12.x computes it (spec 2).

Pure functions only: the HTTP layer (`crucible.api.guard`) gathers the inputs and
decides what a failure means.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime, timedelta, timezone

import attrs
from dateutil import parser as date_parser

#: First version whose body hash is always the hash of the empty string (spec 2.3).
EMPTY_BODY_HASH_SINCE = "v4.20181215"
#: The content type a request is signed with when it carries none (WebSocket handshakes).
DEFAULT_SIGNED_CONTENT_TYPE = "application/octet-stream"
_VERSION_RE = re.compile(r"^v\d+\.\d{8}$")
_COMPACT_DATE_RE = re.compile(r"^(\d{8})T(\d{2}):?(\d{2}):?(\d{2})Z?$")
#: What the official client sends (spec 2.3): ISO 8601 extended form, the fraction left
#: out when microseconds are 0; a zone of Z or ±HH:MM, or none (UTC).
_ISO_DATE_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?"
    r"(Z|[+-]\d{2}:\d{2})?$"
)
#: RFC 1123, the docs' alternative: ``Thu, 20 Dec 2018 01:23:45 GMT``.
_RFC1123_DATE_RE = re.compile(
    r"^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$"
)
_MONTHS = {
    name: n for n, name in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)
}


class MalformedAuthorization(ValueError):
    """The Authorization header does not follow the grammar of spec 2.2."""


@attrs.frozen
class AuthorizationHeader:
    sign_method: str
    hash_name: str
    access_key: str
    signature: str


def parse_authorization(value: str) -> AuthorizationHeader:
    """Parse ``BackendAI signMethod=HMAC-SHA256, credential=AK:SIG``."""
    scheme, _, params = value.strip().partition(" ")
    if scheme not in ("BackendAI", "Sorna") or not params:
        raise MalformedAuthorization("the scheme must be 'BackendAI'")
    fields: dict[str, str] = {}
    for piece in params.split(","):
        key, eq, val = piece.strip().partition("=")
        if not eq:
            raise MalformedAuthorization(f"parameter {key!r} has no value")
        fields[key.strip()] = val.strip()
    try:
        sign_method, credential = fields["signMethod"], fields["credential"]
    except KeyError as exc:
        raise MalformedAuthorization(f"missing parameter {exc.args[0]}") from None
    algo, dash, hash_name = sign_method.partition("-")
    if algo.upper() != "HMAC" or not dash or not hash_name:
        raise MalformedAuthorization("signMethod must be HMAC-<hash>")
    access_key, colon, signature = credential.partition(":")
    if not colon or not access_key or not signature:
        raise MalformedAuthorization("credential must be ACCESS_KEY:SIGNATURE")
    return AuthorizationHeader(sign_method, hash_name.lower(), access_key, signature.lower())


def is_supported_hash(hash_name: str) -> bool:
    return hash_name.lower() in hashlib.algorithms_guaranteed and not hash_name.lower().startswith(
        "shake"
    )


def is_well_formed_version(version: str) -> bool:
    return _VERSION_RE.match(version) is not None


def parse_request_date(raw: str) -> datetime:
    """Parse a Date header leniently: ISO 8601, RFC 1123 or ``YYYYmmddTHHMMSSZ``.

    A value without a zone is UTC. Raises ValueError when nothing sensible comes out.
    The forms the spec names are read exactly, without `dateutil` (a third of
    authentication's cost on every request when it parsed them all); anything else
    still goes to the lenient parser the spec asks for.
    """
    raw = raw.strip()
    if not raw or len(raw) > 64:
        raise ValueError("empty or over-long date")
    parsed = _parse_exact_date(raw)
    if parsed is None:
        try:
            parsed = date_parser.parse(raw)
        except (ValueError, OverflowError) as exc:
            raise ValueError(str(exc)) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _parse_exact_date(raw: str) -> datetime | None:
    """`raw` in one of the spec's three forms, or None when it is in none of them.

    A value in a known form with an impossible field (month 13) raises ValueError
    rather than going on to the lenient parser, which could read it some other way.
    """
    if match := _ISO_DATE_RE.match(raw):
        year, month, day, hh, mm, ss, fraction, zone = match.groups()
        tz = UTC
        if zone and zone != "Z":
            sign = -1 if zone[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
        micro = int(fraction.ljust(6, "0")) if fraction else 0
        return datetime(
            int(year), int(month), int(day), int(hh), int(mm), int(ss), micro, tzinfo=tz
        )
    if match := _RFC1123_DATE_RE.match(raw):
        day, month_name, year, hh, mm, ss = match.groups()
        month = _MONTHS[month_name]
        return datetime(int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=UTC)
    if match := _COMPACT_DATE_RE.match(raw):
        day, hh, mm, ss = match.groups()
        return datetime.strptime(f"{day}{hh}{mm}{ss}", "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    return None


def normalize_content_type(header: str | None) -> str:
    """The content-type line of the string to sign: media type only, lower-cased."""
    if not header:
        return DEFAULT_SIGNED_CONTENT_TYPE
    media_type = header.split(";", 1)[0].strip().lower()
    return media_type or DEFAULT_SIGNED_CONTENT_TYPE


def body_hash(hash_name: str, version: str, body: bytes = b"") -> str:
    """Hex digest of the body as the client hashes it (always empty since v4.20181215)."""
    if version >= EMPTY_BODY_HASH_SINCE:
        body = b""
    return hashlib.new(hash_name, body).hexdigest()


def signing_key(secret_key: str, date: datetime, host: str, hash_name: str = "sha256") -> bytes:
    return _day_key(secret_key, date.strftime("%Y%m%d"), host, hash_name)


#: Keys derived per (secret, day, host): a busy client signs every request of a day
#: with one of them, and deriving it anew was two HMACs of every request's share.
SIGNING_KEY_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=SIGNING_KEY_CACHE_SIZE)
def _day_key(secret_key: str, day: str, host: str, hash_name: str) -> bytes:
    k1 = hmac.new(secret_key.encode(), day.encode(), hash_name).digest()
    return hmac.new(k1, host.encode(), hash_name).digest()


@attrs.frozen
class SigningInput:
    """Everything that goes into a signature, as received on the wire."""

    method: str
    rel_url: str
    raw_date: str
    host: str
    content_type: str
    version: str
    version_header_name: str = "x-backendai-version"

    def string_to_sign(self, hash_name: str, body: bytes = b"") -> str:
        return "\n".join(
            (
                self.method.upper(),
                self.rel_url,
                self.raw_date,
                f"host:{self.host}",
                f"content-type:{self.content_type}",
                f"{self.version_header_name}:{self.version}",
                body_hash(hash_name, self.version, body),
            )
        )


def sign(
    secret_key: str,
    date: datetime,
    data: SigningInput,
    hash_name: str = "sha256",
    body: bytes = b"",
) -> str:
    """The hex signature the client computes for `data` (`body` matters before v4)."""
    key = signing_key(secret_key, date, data.host, hash_name)
    return hmac.new(key, data.string_to_sign(hash_name, body).encode(), hash_name).hexdigest()


def signatures_match(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


def generate_access_key() -> str:
    """``AKIA`` + 16 base32 characters (spec 2.1)."""
    return "AKIA" + base64.b32encode(secrets.token_bytes(10)).decode()[:16]


def generate_secret_key() -> str:
    """40 URL-safe base64 characters from 30 random bytes (spec 2.1)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(30)).decode()
