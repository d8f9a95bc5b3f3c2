"""Reading a ``multipart/form-data`` upload part by part, as it arrives.

Each file part's bytes are handed on chunk by chunk (werkzeug's sans-I/O decoder does
the parsing), so the manager holds at most a chunk or two of an upload in memory.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator
from urllib.parse import unquote

import trio
from werkzeug.sansio.multipart import (
    NEED_DATA,
    Data,
    Epilogue,
    Field,
    File,
    MultipartDecoder,
)

from crucible import errors

MAX_PARTS = 10_000

#: Charsets a ``filename*`` may name ("" is taken as UTF-8).
EXTENDED_CHARSETS = frozenset({"", "utf-8", "iso-8859-1"})

_BOUNDARY_RE = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_PARAM_RE = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def boundary_of(content_type: str | None) -> bytes:
    if not content_type or not content_type.lower().startswith("multipart/form-data"):
        raise errors.InvalidAPIParameters("The upload must be multipart/form-data.")
    match = _BOUNDARY_RE.search(content_type)
    if match is None:
        raise errors.InvalidAPIParameters("The multipart body has no boundary.")
    return match[1].strip().encode("latin-1")


def part_filename(disposition: str) -> str | None:
    """The file name a part's Content-Disposition carries, decoded (spec 4.9's trap).

    ``filename*`` (RFC 5987/2231: ``charset'lang'percent-encoded``) wins when present;
    otherwise ``filename``, which the 18.12 client percent-encodes (``/`` as ``%2F``).
    """
    plain: str | None = None
    extended: str | None = None
    for name, raw in _PARAM_RE.findall(disposition):
        value = raw.strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        key = name.lower()
        if key == "filename*":
            extended = _extended_value(value)
        elif key == "filename":
            try:
                plain = unquote(value, errors="strict")
            except UnicodeDecodeError:
                raise errors.InvalidAPIParameters("An undecodable filename parameter.") from None
    return extended if extended is not None else plain


def _extended_value(value: str) -> str:
    """``charset'lang'percent-encoded`` → text, in one of the two charsets RFC 5987
    names. Python knows other codecs, some of which (``unicode_escape``...) turn plain
    ASCII escapes into NULs and lone surrogates."""
    charset, sep, rest = value.partition("'")
    _lang, sep2, encoded = rest.partition("'")
    if not (sep and sep2):
        raise errors.InvalidAPIParameters("A malformed filename* parameter.")
    if charset.lower() not in EXTENDED_CHARSETS:
        raise errors.InvalidAPIParameters(
            "A filename* parameter must be in UTF-8 or ISO-8859-1."
        )
    try:
        return unquote(encoded, encoding=charset or "utf-8", errors="strict")
    except UnicodeDecodeError:
        raise errors.InvalidAPIParameters("An undecodable filename* parameter.") from None


class MultipartReader:
    """Pulls parts out of `body`; iterate `files()`, and each part's `chunks()` fully."""

    def __init__(self, body: AsyncIterator[bytes], boundary: bytes, *, idle_timeout: float):
        self._body = body
        # No memory cap in the decoder: it would apply to every chunk fed, and the
        # decoder's buffer only ever holds the chunk being parsed (fields are skipped,
        # never kept), since data is fed only when it asks for more.
        self._decoder = MultipartDecoder(boundary, max_parts=MAX_PARTS)
        self._idle_timeout = idle_timeout
        self._eof = False
        self._pending_data: Data | None = None

    async def _next_event(self) -> object:
        while True:
            try:
                event = self._decoder.next_event()
            except ValueError as exc:
                raise errors.InvalidAPIParameters(f"Malformed multipart body: {exc}.") from None
            if event is not NEED_DATA:
                return event
            if self._eof:
                raise errors.InvalidAPIParameters("The multipart body ends too early.")
            chunk: bytes | None
            # Per chunk, not per body: a large upload may take long, a stalled one not.
            with trio.move_on_after(self._idle_timeout) as scope:
                try:
                    chunk = await self._body.__anext__()
                except StopAsyncIteration:
                    chunk = None
            if scope.cancelled_caught:
                raise errors.GenericBadRequest("The upload stalled.")
            if chunk is None:
                self._eof = True
            self._decoder.receive_data(chunk)

    async def files(self) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        """Yield ``(filename, chunks)`` per file part; fields are skipped."""
        while True:
            event = await self._next_event()
            if isinstance(event, Epilogue):
                return
            if isinstance(event, File):
                disposition = event.headers.get("Content-Disposition", "")
                filename = part_filename(disposition)
                if filename is None:
                    raise errors.InvalidAPIParameters("A file part has no filename.")
                chunks = self._chunks()
                try:
                    yield filename, chunks
                    # Whatever the consumer left unread of this part is skipped.
                    async for _ in chunks:
                        pass
                finally:
                    await chunks.aclose()
            elif isinstance(event, Field):
                async for _ in self._chunks():
                    pass

    async def _chunks(self) -> AsyncGenerator[bytes, None]:
        while True:
            event = await self._next_event()
            if not isinstance(event, Data):
                raise errors.InvalidAPIParameters("Malformed multipart body.")
            if event.data:
                yield event.data
            if not event.more_data:
                return
