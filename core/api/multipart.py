"""The API's one multipart codec: uploads are read here, downloads are framed here.

Reading ``multipart/form-data`` (RFC 7578 on RFC 2046), as the body arrives: the
services get an async iterator of `Part` values, each with an async iterator of its
bytes, and never see the HTTP body. The reader is strict where being lenient would
make a body mean two things: line breaks are CRLF, a delimiter is followed by ``--``,
padding and a CRLF or nothing at all is a delimiter, every part names itself with
exactly one ``form-data`` Content-Disposition. It holds at most one read of the body
plus a few bytes at a time: the preamble and the epilogue are dropped as they stream,
a part's header block is bounded (`MAX_HEAD_BYTES`), and part contents are handed on
in pieces of at most `CHUNK_BYTES`, whatever size the body's reads have.

It is not werkzeug's sans-I/O decoder: that one takes bare CR or LF for line breaks,
and when a read of the body ends between the two dashes of the closing delimiter it
hands the delimiter's CR on as the last byte of the last file (pallets/werkzeug#3285).

Writing ``multipart/mixed`` (`MultipartWriter`): session downloads (tar archives
aligned for the 18.12 client's parser) and folder downloads (gzip streams).
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Sequence
from urllib.parse import quote, unquote

import attrs
import trio

from crucible import errors

#: Largest piece of a part's content handed on at once: as large as the body's reads
#: get (its flow control holds about 1 MiB), since a storage plugin may pay a thread
#: hop per piece; a consumer that needs smaller pieces (the session relay) cuts them.
CHUNK_BYTES = 1024 * 1024
#: Largest header block of one part (and padding after a delimiter).
MAX_HEAD_BYTES = 8 * 1024
#: Most parts one body may hold (fields included).
MAX_PARTS = 10_000
#: Charsets a ``filename*`` may name ("" is taken as UTF-8).
EXTENDED_CHARSETS = frozenset({"", "utf-8", "iso-8859-1"})

#: RFC 2046 5.1.1: a boundary is 1 to 70 of these, and does not end in a space.
_BOUNDARY_CHARS = frozenset(string.ascii_letters + string.digits + "'()+_,-./:=? ")
_MAX_BOUNDARY = 70
_PARAM_RE = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_PADDING_RE = re.compile(rb"[ \t]*")


def _malformed(why: str) -> errors.InvalidAPIParameters:
    return errors.InvalidAPIParameters(f"Malformed multipart body: {why}.")


# -- headers --------------------------------------------------------------------------------


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` body, from its Content-Type."""
    mimetype, _, params = (content_type or "").partition(";")
    if mimetype.strip().lower() != "multipart/form-data":
        raise errors.InvalidAPIParameters("Uploads must be multipart/form-data.")
    boundaries = [value for key, value in _params(";" + params) if key == "boundary"]
    if not boundaries or not boundaries[0]:
        raise errors.InvalidAPIParameters("The multipart body has no boundary.")
    boundary = boundaries[0]
    if (
        len(boundaries) > 1
        or len(boundary) > _MAX_BOUNDARY
        or not _BOUNDARY_CHARS.issuperset(boundary)
        or boundary.endswith(" ")
    ):
        raise errors.InvalidAPIParameters("A malformed multipart boundary.")
    return boundary.encode("ascii")


def _params(disposition: str) -> list[tuple[str, str]]:
    """``(lower-cased name, value)`` of each parameter, quoted values unquoted."""
    found = []
    for name, raw in _PARAM_RE.findall(disposition):
        value = raw.strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        found.append((name.lower(), value))
    return found


def part_filename(disposition: str) -> str | None:
    """The file name a part's Content-Disposition carries, decoded (spec 4.9's trap).

    ``filename*`` (RFC 5987/2231: ``charset'lang'percent-encoded``) wins when present;
    otherwise ``filename``, which the 18.12 client percent-encodes (``/`` as ``%2F``).
    """
    plain: str | None = None
    extended: str | None = None
    for key, value in _params(disposition):
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


def _header_lines(block: bytes) -> list[tuple[str, str]]:
    """A part's header block → ``(lower-cased name, value)`` per line."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("a part's headers are not UTF-8") from None
    headers = []
    for line in text.split("\r\n") if text else ():
        name, sep, value = line.partition(":")
        value = value.strip(" \t")
        # Folded lines, bare CR or LF and other control characters included.
        if not sep or not _TOKEN_RE.fullmatch(name) or _CONTROL_RE.search(value):
            raise _malformed("a part has a malformed header line")
        headers.append((name.lower(), value))
    return headers


def _describe(headers: list[tuple[str, str]]) -> tuple[str, str | None]:
    """A part's ``(name, filename)``; filename None for a plain field."""
    dispositions = [value for name, value in headers if name == "content-disposition"]
    if len(dispositions) != 1:
        raise _malformed("a part needs one Content-Disposition header")
    disposition = dispositions[0]
    if disposition.split(";", 1)[0].strip().lower() != "form-data":
        raise _malformed("a part's Content-Disposition must be form-data")
    names = [value for key, value in _params(disposition) if key == "name"]
    if not names:
        raise _malformed("a part's Content-Disposition has no name")
    return names[-1], part_filename(disposition)


# -- reading --------------------------------------------------------------------------------


@attrs.frozen
class Part:
    """One part of an upload. Read `content` before asking for the next part: what is
    left unread is skipped then, and the content cannot be read any more."""

    name: str
    #: None for a field (a part without a file name).
    filename: str | None
    content: AsyncIterator[bytes] = attrs.field(repr=False, eq=False)


class MultipartReader:
    """Reads one ``multipart/form-data`` body from `body`; iterate `parts()` once.

    A body that sends nothing for `idle_timeout` seconds is refused: a large upload
    may take long, a stalled one may not hold its staging (or a folder's write lock).
    """

    def __init__(
        self, body: AsyncIterable[bytes], boundary: bytes, *, idle_timeout: float
    ) -> None:
        self._body = aiter(body)
        self._delimiter = b"\r\n--" + boundary
        self._idle_timeout = idle_timeout
        # A CRLF in front makes a first delimiter at the very start like any other.
        self._buffer = bytearray(b"\r\n")
        self._ended = False

    @property
    def buffered_bytes(self) -> int:
        """Bytes of the body held here now (for tests of the memory bound)."""
        return len(self._buffer)

    async def parts(self) -> AsyncGenerator[Part, None]:
        async for _preamble in self._content():
            pass
        count = 0
        while await self._after_delimiter():
            count += 1
            if count > MAX_PARTS:
                raise errors.RequestTooLarge(f"At most {MAX_PARTS} parts per multipart body.")
            name, filename = _describe(_header_lines(await self._head()))
            content = self._content()
            try:
                yield Part(name, filename, content)
                async for _unread in content:
                    pass
            finally:
                await content.aclose()
        await self._epilogue()

    async def _read(self) -> bytes | None:
        """The body's next read; None once it has ended."""
        with trio.move_on_after(self._idle_timeout) as scope:
            chunk = await anext(self._body, None)
        if scope.cancelled_caught:
            raise errors.GenericBadRequest("The upload stalled.")
        if chunk is None:
            self._ended = True
        return chunk

    async def _fill(self) -> None:
        """More of the body into the buffer; a body may not end before its close."""
        chunk = None if self._ended else await self._read()
        if chunk is None:
            raise errors.InvalidAPIParameters("The multipart body ends too early.")
        self._buffer += chunk

    async def _content(self) -> AsyncGenerator[bytes, None]:
        """The bytes up to the next delimiter, which is consumed with them."""
        delimiter = self._delimiter
        buffer = self._buffer
        while True:
            found = buffer.find(delimiter)
            # Whatever lies before where a delimiter could start is content for sure.
            end = found if found >= 0 else len(buffer) - len(delimiter) + 1
            while end > 0:
                size = min(end, CHUNK_BYTES)
                chunk = bytes(buffer[:size])
                del buffer[:size]
                end -= size
                yield chunk
            if found >= 0:
                del buffer[: len(delimiter)]
                return
            await self._fill()

    async def _after_delimiter(self) -> bool:
        """What follows a delimiter: True for a part, False for the close (``--``)."""
        buffer = self._buffer
        while True:
            if buffer.startswith(b"--"):
                del buffer[:2]
                return False
            match = _PADDING_RE.match(buffer)
            padding = match.end() if match else 0
            rest = bytes(buffer[padding : padding + 2])
            if rest == b"\r\n":
                del buffer[: padding + 2]
                return True
            undecided = rest in (b"", b"\r") or buffer == b"-"
            if not undecided:
                raise _malformed("a boundary is followed by more than a line break")
            if len(buffer) > MAX_HEAD_BYTES:
                raise _malformed("a boundary is followed by too much padding")
            await self._fill()

    async def _head(self) -> bytes:
        """A part's header block (the blank line after it consumed)."""
        buffer = self._buffer
        while True:
            # -2: no header lines at all, the blank line right away.
            end = -2 if buffer.startswith(b"\r\n") else buffer.find(b"\r\n\r\n")
            if end > MAX_HEAD_BYTES or (end == -1 and len(buffer) > MAX_HEAD_BYTES):
                raise errors.InvalidAPIParameters(
                    f"A part's headers may take at most {MAX_HEAD_BYTES} bytes."
                )
            if end != -1:
                block = bytes(buffer[: max(end, 0)])
                del buffer[: end + 4]
                return block
            await self._fill()

    async def _epilogue(self) -> None:
        """After the close: anything until the body ends is dropped (RFC 2046)."""
        self._buffer.clear()
        while not self._ended:
            await self._read()


# -- writing --------------------------------------------------------------------------------


def attachment(filename: str, *, plain: bool) -> str:
    """A Content-Disposition naming `filename`: RFC 5987 always (any name survives), and
    with `plain` an ASCII ``filename`` too, for parsers that read only that."""
    extended = f"filename*=utf-8''{quote(filename, safe='')}"
    if not plain:
        return f"attachment; {extended}"
    ascii_name = filename.encode("ascii", "replace").decode()
    ascii_name = ascii_name.replace('"', "_").replace("\\", "_")
    return f'attachment; filename="{ascii_name}"; {extended}'


class MultipartWriter:
    """One ``multipart/mixed`` body: each part's `head` (or a whole `padded_part`), its
    bytes, and `end` after the last part. Each delimiter carries the CRLF in front of
    it, so a part's bytes end exactly where its content does."""

    def __init__(self, boundary: str | None = None) -> None:
        self.boundary = boundary or "crucible-" + secrets.token_hex(16)
        self._parts = 0

    @property
    def content_type(self) -> str:
        return f"multipart/mixed; boundary={self.boundary}"

    def _head(self, headers: Sequence[tuple[str, str]]) -> bytes:
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
        lead = "\r\n" if self._parts else ""
        return f"{lead}--{self.boundary}\r\n{lines}\r\n".encode("ascii")

    def head(self, headers: Sequence[tuple[str, str]]) -> bytes:
        """The delimiter and headers of the next part (ASCII: names go in RFC 5987)."""
        head = self._head(headers)
        self._parts += 1
        return head

    def padded_part(
        self, headers: Sequence[tuple[str, str]], payload: bytes, *, align: int
    ) -> bytes:
        """The next part whole, its delimiter included, with a Content-Length, padded
        with zero bytes after `payload` to a multiple of `align` bytes (for payloads
        such trailing zeros leave valid, like tar archives)."""
        pad = 0
        for _ in range(4):  # the length header's own width can shift the layout once
            head = self._head([*headers, ("Content-Length", str(len(payload) + pad))])
            wanted = -(len(head) + len(payload)) % align
            if wanted == pad:
                break
            pad = wanted
        self._parts += 1
        return head + payload + b"\0" * pad

    def end(self) -> bytes:
        """The closing delimiter."""
        lead = "\r\n" if self._parts else ""
        return f"{lead}--{self.boundary}--\r\n".encode("ascii")
