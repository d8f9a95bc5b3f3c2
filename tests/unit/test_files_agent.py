"""Session files without Docker: path checks, filename decoding, the download framing."""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from pathlib import Path

import pytest

from crucible.agent.files.paths import FileOpError, split_path
from crucible.agent.files.service import KernelFiles
from crucible.api.kernel_files import _archive_part
from crucible.api.multipart import MultipartWriter
from crucible.protocol.file_calls import UploadBegin, UploadCommit, UploadData, UploadFile

#: The kernel a call names; `KernelFiles` serves one kernel and does not look at it.
KERNEL = "kernel-1"


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        (".", []),
        ("", []),
        ("/home/work", []),
        ("/home/work/", []),
        ("a/b.txt", ["a", "b.txt"]),
        ("/home/work/a//./b", ["a", "b"]),
        ("a/../b", ["b"]),
        ("é ü/x", ["é ü", "x"]),
    ],
)
def test_split_path(path: str, parts: list[str]) -> None:
    assert split_path(path) == parts


@pytest.mark.parametrize(
    "path",
    [
        "..",
        "../x",
        "a/../../x",
        "/etc/passwd",
        "/home/workx",
        "/",
        "a\x00b",
        "a\nb",
        "a\rb",
        "x" * 256,
        "a/" * 2100,
        42,
        None,
    ],
)
def test_split_path_refuses(path: object) -> None:
    with pytest.raises(FileOpError) as caught:
        split_path(path)
    assert caught.value.kind == "invalid-path"


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def naive_client(body: bytes, reads: list[int], dest: Path) -> list[list[str]]:
    """What the 18.12 client's download loop does, with the read sizes it would get."""
    names: list[list[str]] = []
    fp = None
    offset = 0
    sizes = iter(reads)
    while offset < len(body):
        chunk = body[offset : offset + next(sizes, 1024)]
        offset += len(chunk)
        for part in chunk.split(b"\r\n"):
            if part.startswith(b"--"):
                if fp:
                    fp.close()
                    with tarfile.open(fp.name) as tarf:
                        tarf.extractall(path=dest, filter="data")
                        names.append(tarf.getnames())
                    os.unlink(fp.name)
                fp = tempfile.NamedTemporaryFile(suffix=".tar", delete=False)
            elif part.startswith(b"Content-") or part == b"":
                continue
            else:
                assert fp is not None
                fp.write(part)
    assert fp is not None
    fp.close()
    os.unlink(fp.name)
    return names


@pytest.mark.parametrize("short_reads", [False, True])
def test_download_framing_survives_the_naive_parser(tmp_path: Path, short_reads: bool) -> None:
    archives = [
        ("a.txt", _tar({"a.txt": b"hello\n"})),
        ("b.bin", _tar({"b.bin": os.urandom(5000).replace(b"\r\n", b"..")})),
        ("d", _tar({"d/x": b"x" * 20000, "d/y": b"y"})),
    ]
    writer = MultipartWriter("crucible-0123")
    parts = [_archive_part(writer, n, a) for n, a in archives]
    body = b"".join(parts) + writer.end()
    assert all(len(part) % 1024 == 0 for part in parts)
    # Full 1 KiB reads, or a short read wherever the server's writes ended.
    reads = []
    if short_reads:
        for part in parts:
            reads += [1024] * (len(part) // 1024)
    names = naive_client(body, reads, tmp_path)
    assert names == [["a.txt"], ["b.bin"], ["d/x", "d/y"]]
    assert (tmp_path / "a.txt").read_bytes() == b"hello\n"
    assert (tmp_path / "d/x").read_bytes() == b"x" * 20000


@pytest.mark.skipif(os.geteuid() != 0, reason="the agent chowns files to uid 1000: needs root")
def test_refused_commit_writes_nothing(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    os.chown(work, 1000, 1000)
    files = KernelFiles(work, tmp_path / "staging", upload_idle_timeout=120.0)
    upload_id = files.upload_begin(UploadBegin(KERNEL)).upload_id
    files.upload_file(UploadFile(KERNEL, upload_id, "ok/a.txt"))
    files.upload_data(UploadData(KERNEL, upload_id, "aGk="))
    os.symlink("/", work / "evil")
    files.upload_file(UploadFile(KERNEL, upload_id, "evil/tmp/x"))
    with pytest.raises(FileOpError, match="symbolic link"):
        files.upload_commit(UploadCommit(KERNEL, upload_id))
    assert sorted(os.listdir(work)) == ["evil"]
    # The failed upload is gone.
    with pytest.raises(FileOpError):
        files.upload_commit(UploadCommit(KERNEL, upload_id))
