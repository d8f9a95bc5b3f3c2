"""The official client's file commands against Crucible (spec 11, items 6-8; 4.9-4.11)."""

from __future__ import annotations

import secrets
from pathlib import Path

from ._support import RunningCrucible, cli

#: Text with what tends to break naive handling: non-ASCII, tabs, blank lines, a line
#: starting with dashes (the client's multipart parser treats such lines specially).
TEXT = "héllo, wörld\n\tindented\n\n-- not a boundary\nContent-Like: line\nlast line\n"
BIG = b"".join(b"line %06d of a larger file\n" % i for i in range(30000))


def test_upload_ls_download_round_trip(crucible_server: RunningCrucible, tmp_path: Path) -> None:
    name = "compat" + secrets.token_hex(4)
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "notes.txt").write_bytes(TEXT.encode())
    # Large enough for hundreds of the client's 1 KiB reads, some of them short.
    (source / "sub" / "data.txt").write_bytes(BIG)
    started = cli(crucible_server, "start", "-t", name, "python")
    assert started.returncode == 0, started.stderr
    try:
        uploaded = cli(crucible_server, "upload", name, "notes.txt", "sub/data.txt", cwd=source)
        assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr

        listed = cli(crucible_server, "ls", name)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert "/home/work" in listed.stdout
        assert "notes.txt" in listed.stdout and "sub" in listed.stdout
        listed = cli(crucible_server, "ls", name, "sub")
        assert listed.returncode == 0 and "data.txt" in listed.stdout

        dest = tmp_path / "dest"
        dest.mkdir()
        got = cli(
            crucible_server, "download", name, "notes.txt", "sub/data.txt", "--dest", str(dest)
        )
        assert got.returncode == 0, got.stdout + got.stderr
        assert (dest / "notes.txt").read_bytes() == TEXT.encode()
        assert (dest / "data.txt").read_bytes() == BIG

        missing = cli(crucible_server, "download", name, "nope.txt", "--dest", str(dest))
        assert missing.returncode != 0
        assert "404" in missing.stdout + missing.stderr
    finally:
        cli(crucible_server, "terminate", name)


def test_refused_upload_is_reported(crucible_server: RunningCrucible, tmp_path: Path) -> None:
    name = "compat" + secrets.token_hex(4)
    (tmp_path / "big.bin").write_bytes(b"\0" * (2 * 1024 * 1024))
    assert cli(crucible_server, "start", "-t", name, "python").returncode == 0
    try:
        refused = cli(crucible_server, "upload", name, "big.bin", cwd=tmp_path)
        assert refused.returncode != 0
        assert "400" in refused.stdout + refused.stderr
    finally:
        cli(crucible_server, "terminate", name)
