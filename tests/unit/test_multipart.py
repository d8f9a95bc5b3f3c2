"""The API's multipart codec: reading uploads part by part, writing downloads."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from email.parser import BytesParser
from email.policy import HTTP

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from crucible import errors
from crucible.api.multipart import (
    CHUNK_BYTES,
    MAX_HEAD_BYTES,
    MultipartReader,
    MultipartWriter,
    attachment,
    boundary_of,
    part_filename,
)

MiB = 1024 * 1024
#: Bytes that make data look like the start of a delimiter, a line break or a padding.
TRICKY = [b"\r", b"\n", b"-", b"--", b"\r\n", b"\r\n-", b"\r\n--", b" ", b"x", b"b", b"bo"]


def form(
    files: Sequence[tuple[str, bytes]],
    boundary: bytes = b"bound",
    *,
    preamble: bytes = b"",
    epilogue: bytes = b"",
) -> bytes:
    out = bytearray(preamble + (b"\r\n" if preamble else b""))
    for name, data in files:
        out += b"--" + boundary + b"\r\n"
        out += b'Content-Disposition: form-data; name="src"; filename="' + name.encode()
        out += b'"\r\nContent-Type: application/octet-stream\r\n\r\n' + data + b"\r\n"
    return bytes(out + b"--" + boundary + b"--\r\n" + epilogue)


async def reads(body: bytes, sizes: Sequence[int]) -> AsyncIterator[bytes]:
    """`body` in reads of `sizes` (cycled); the rest in one read."""
    start, index = 0, 0
    while start < len(body):
        size = sizes[index % len(sizes)] if sizes else len(body)
        yield body[start : start + size]
        start += size
        index += 1


async def parse(
    body: bytes | AsyncIterator[bytes], boundary: bytes = b"bound", idle: float = 5.0
) -> list[tuple[str, str | None, list[bytes]]]:
    source = reads(body, []) if isinstance(body, bytes) else body
    reader = MultipartReader(source, boundary, idle_timeout=idle)
    found = []
    with trio.fail_after(10):
        async for part in reader.parts():
            found.append((part.name, part.filename, [chunk async for chunk in part.content]))
    return found


def contents(parsed: list[tuple[str, str | None, list[bytes]]]) -> list[tuple[str, bytes]]:
    return [(str(filename), b"".join(chunks)) for _, filename, chunks in parsed]


data_st = st.lists(st.sampled_from(TRICKY), max_size=40).map(b"".join)


@given(
    files=st.lists(st.tuples(st.sampled_from(["a", "b/c", "d e"]), data_st), max_size=4),
    sizes=st.lists(st.integers(1, 40), max_size=6),
    boundary=st.sampled_from([b"b", b"bound", b"-", b"----x", b"a'()+_,-./:=? z"]),
)
async def test_any_reads_give_back_the_parts(
    files: list[tuple[str, bytes]], sizes: list[int], boundary: bytes
) -> None:
    # A part's data never holds its delimiter (RFC 2046 5.1.1: the client picks a
    # boundary that does not occur); these bytes only come close to one.
    files = [(n, d) for n, d in files if b"\r\n--" + boundary not in b"\r\n" + d + b"\r\n"]
    parsed = await parse(reads(form(files, boundary), sizes), boundary)
    assert contents(parsed) == files
    assert all(chunk for _, _, chunks in parsed for chunk in chunks)


async def test_every_split_of_the_body_gives_the_same_parts() -> None:
    """Among them, a read ending between the closing dashes: werkzeug's decoder then
    gives the last file the delimiter's CR (pallets/werkzeug#3285)."""
    files = [("a", b"one\r"), ("b", b"\n-two-"), ("c", b"")]
    body = form(files)
    for cut in range(1, len(body)):
        parsed = await parse(reads(body, [cut, len(body)]))
        assert contents(parsed) == files, cut


async def test_large_reads_are_handed_on_in_bounded_pieces() -> None:
    data = bytes(range(256)) * (3 * MiB // 256)
    parsed = await parse(reads(form([("big", data)]), [2 * MiB]))
    chunks = parsed[0][2]
    assert b"".join(chunks) == data
    assert max(len(chunk) for chunk in chunks) <= CHUNK_BYTES


async def test_preamble_and_epilogue_are_dropped_as_they_stream() -> None:
    body = form([("a", b"x")], preamble=b"p" * 4 * MiB, epilogue=b"e" * 4 * MiB)
    reader: MultipartReader
    held: list[int] = []

    async def watched() -> AsyncIterator[bytes]:
        async for chunk in reads(body, [64 * 1024]):
            held.append(reader.buffered_bytes)
            yield chunk

    reader = MultipartReader(watched(), b"bound", idle_timeout=5)
    with trio.fail_after(10):
        found = [(p.filename, b"".join([c async for c in p.content])) async for p in reader.parts()]
    assert found == [("a", b"x")]
    assert len(held) > 100 and max(held) < 128 * 1024


async def test_unread_parts_and_fields_are_skipped() -> None:
    body = (
        b"--bound\r\nContent-Disposition: form-data; name=note\r\n\r\nhello\r\n"
        + form([("a", b"A" * 200_000), ("b", b"B")])
    )
    reader = MultipartReader(reads(body, [1000]), b"bound", idle_timeout=5)
    seen = []
    with trio.fail_after(10):
        async for part in reader.parts():
            seen.append((part.name, part.filename))
            if part.filename == "b":
                assert [chunk async for chunk in part.content] == [b"B"]
    assert seen == [("note", None), ("src", "a"), ("src", "b")]


def part(headers: bytes, data: bytes = b"x") -> bytes:
    return b"--bound\r\n" + headers + b"\r\n\r\n" + data + b"\r\n--bound--\r\n"


DISPOSITION = b'Content-Disposition: form-data; name="src"; filename="a"'


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"--bound\r\n",
        form([("a", b"x")])[:-8],  # ends before the close
        form([("a", b"x")]).replace(b"\r\n", b"\n"),  # bare LF line breaks
        form([("a", b"x")]).replace(b"--bound\r\n", b"--boundary\r\n"),  # not a delimiter
        part(b"Content-Type: text/plain"),  # no Content-Disposition
        part(DISPOSITION + b"\r\n" + DISPOSITION),  # two of them
        part(b'Content-Disposition: attachment; name="src"; filename="a"'),
        part(b'Content-Disposition: form-data; filename="a"'),  # no name
        part(DISPOSITION + b"\r\nno colon here"),
        part(DISPOSITION + b"\r\n folded: line"),
        part(DISPOSITION + b"\r\nX-Bad: a\x00b"),
        part(DISPOSITION + b"\r\nX-Bad: caf\xe9"),  # not UTF-8
        part(DISPOSITION + b"\r\nX-Pad: " + b"p" * MAX_HEAD_BYTES),
        part(b"Content-Disposition: form-data; name=src; filename*=nonsense"),
        b"--bound  \t" + b" " * MAX_HEAD_BYTES + b"\r\n",
    ],
)
async def test_malformed_bodies_are_400(body: bytes) -> None:
    with pytest.raises(errors.InvalidAPIParameters):
        await parse(reads(body, [7]))


async def test_padding_after_a_delimiter_is_allowed() -> None:
    body = form([("a", b"x")]).replace(b"--bound\r\n", b"--bound \t\r\n")
    assert contents(await parse(body)) == [("a", b"x")]


async def test_too_many_parts_are_413() -> None:
    body = form([("a", b"")] * 10_001)
    with pytest.raises(errors.RequestTooLarge):
        await parse(body)


async def test_a_stalled_body_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    async def stalls() -> AsyncIterator[bytes]:
        yield form([("a", b"x")])[:60]
        await trio.sleep_forever()

    with pytest.raises(errors.GenericBadRequest, match="stalled"):
        await parse(stalls(), idle=3)


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        ("multipart/form-data; boundary=abc", b"abc"),
        ('Multipart/Form-Data; boundary="a b:c"', b"a b:c"),
        ("multipart/form-data; charset=utf-8; boundary=----x", b"----x"),
    ],
)
def test_boundaries(content_type: str, boundary: bytes) -> None:
    assert boundary_of(content_type) == boundary


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/json",
        "multipart/form-data-x; boundary=a",
        "multipart/form-data",
        "multipart/form-data; xboundary=a",
        "multipart/form-data; boundary=" + "a" * 71,
        'multipart/form-data; boundary="ends "',
        "multipart/form-data; boundary=caf\u00e9",
        "multipart/form-data; boundary=a\tb",
        "multipart/form-data; boundary=a; boundary=b",
    ],
)
def test_bad_content_types_are_400(content_type: str | None) -> None:
    with pytest.raises(errors.InvalidAPIParameters):
        boundary_of(content_type)


def test_the_writer_frames_parts_a_standard_parser_reads() -> None:
    writer = MultipartWriter()
    disposition = attachment('é "x".txt', plain=True)
    body = (
        writer.head([("Content-Type", "text/plain"), ("Content-Disposition", disposition)])
        + b"one\r\n"
        + writer.padded_part([("Content-Type", "application/x-tar")], b"two", align=1024)
        + writer.end()
    )
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {writer.content_type}\r\n\r\n".encode() + body
    )
    first, second = message.iter_parts()
    # The plain name for parsers that read only that one, and the whole name in RFC 5987.
    assert first.get_filename() == "? _x_.txt"
    raw_disposition = body.split(b"\r\n")[2].decode("ascii")
    assert raw_disposition.startswith("Content-Disposition: attachment; ")
    assert part_filename(raw_disposition) == 'é "x".txt'
    assert first.get_payload(decode=True) == b"one\r\n"
    payload = second.get_payload(decode=True)
    assert isinstance(payload, bytes)
    assert payload.rstrip(b"\0") == b"two" and int(second["Content-Length"]) == len(payload)
    padded_end = body.index(writer.end())
    assert (padded_end - body.index(b"\r\n--" + writer.boundary.encode())) % 1024 == 0


def test_the_writer_closes_an_empty_body() -> None:
    writer = MultipartWriter("b")
    assert writer.end() == b"--b--\r\n"
    assert attachment("a/é", plain=False) == "attachment; filename*=utf-8''a%2F%C3%A9"


# -- the filename of a part (uploads to sessions and to folders alike) ----------------------


@pytest.mark.parametrize(
    ("disposition", "name"),
    [
        ('form-data; name="src"; filename="sub%2Fb.h"', "sub/b.h"),
        ('form-data; name="src"; filename="x"; filename*=utf-8\'\'sub%2F%C3%A9.h', "sub/é.h"),
        ('form-data; name="src"; filename="a%20b%25.txt"', "a b%.txt"),
        ('form-data; name="src"; filename="100%25"', "100%"),
        ('form-data; name="src"; filename="semi;colon"', "semi;colon"),
        ('form-data; name="src"', None),
    ],
)
def test_part_filename(disposition: str, name: str | None) -> None:
    assert part_filename(disposition) == name


def test_part_filename_refuses_garbage() -> None:
    with pytest.raises(errors.InvalidAPIParameters):
        part_filename("form-data; filename*=nonsense")
    with pytest.raises(errors.InvalidAPIParameters):
        part_filename("form-data; filename*=no-such-charset''%C3%A9")
