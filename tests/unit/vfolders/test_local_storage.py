"""The `local` plugin on a real filesystem: atomic uploads and symlinks never followed."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crucible import fstree
from crucible.hookspecs.storage import (
    EntryNotFound,
    HostSettings,
    IsADirectory,
    NotADirectory,
    NotAFile,
    VFolderHost,
)
from crucible.plugin_manager import load_storage_backends
from crucible.plugins.storage.local import LocalHost


@pytest.fixture
async def host(tmp_path: Path) -> LocalHost:
    backend = load_storage_backends()["local"]
    settings = HostSettings("local", "local", str(tmp_path / "root"), {}, str(tmp_path))
    opened = backend.open_host(settings)
    assert isinstance(opened, VFolderHost)
    assert isinstance(opened, LocalHost)
    return opened


async def chunks(*parts: bytes, fail: bool = False) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    if fail:
        raise RuntimeError("client went away")


def test_bad_settings(tmp_path: Path) -> None:
    backend = load_storage_backends()["local"]
    with pytest.raises(ValueError, match="options"):
        backend.open_host(HostSettings("l", "local", str(tmp_path), {"x": 1}, str(tmp_path)))
    with pytest.raises(ValueError, match="absolute"):
        backend.open_host(HostSettings("l", "local", "rel", {}, str(tmp_path)))


async def test_layout_and_upload(host: LocalHost) -> None:
    fid = uuid.uuid4().hex
    await host.create_folder(fid)
    assert oct(host.root.stat().st_mode & 0o777) == "0o700"
    assert await host.upload_file(fid, ("a", "b.txt"), chunks(b"he", b"llo")) == 5
    assert (host.root / fid / "data" / "a" / "b.txt").read_bytes() == b"hello"
    usage = await host.usage(fid)
    assert (usage.size_bytes, usage.file_count) == (5, 2)
    # A broken upload leaves the old content and no staging file.
    with pytest.raises(RuntimeError):
        await host.upload_file(fid, ("a", "b.txt"), chunks(b"XXXX", fail=True))
    assert (host.root / fid / "data" / "a" / "b.txt").read_bytes() == b"hello"
    assert list((host.root / fid / "staging").iterdir()) == []
    reader = await host.open_file(fid, ("a", "b.txt"))
    assert reader.size == 5 and await reader.read(100) == b"hello"
    await reader.aclose()
    with pytest.raises(NotAFile):
        await host.open_file(fid, ("a",))
    with pytest.raises(EntryNotFound):
        await host.open_file(fid, ("zz",))
    with pytest.raises(IsADirectory):
        await host.delete_files(fid, [("a",)], recursive=False)
    await host.delete_files(fid, [("a",), ("missing",)], recursive=True)
    assert await host.list_files(fid, ()) == []
    await host.delete_folder(fid)
    assert not (host.root / fid).exists()


async def test_planted_symlinks_are_never_followed(host: LocalHost, tmp_path: Path) -> None:
    fid = uuid.uuid4().hex
    await host.create_folder(fid)
    data = host.root / fid / "data"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    (data / "dir").mkdir()
    (data / "dir" / "link").symlink_to(outside)
    (data / "out").symlink_to(outside)
    (data / "secret").symlink_to(outside / "secret")
    os.mkfifo(data / "fifo")
    for path in (("out",), ("dir", "link")):
        with pytest.raises(NotADirectory):
            await host.list_files(fid, path)
        with pytest.raises(NotADirectory):
            await host.upload_file(fid, (*path, "new"), chunks(b"x"))
        with pytest.raises(NotADirectory):
            await host.mkdir(fid, (*path, "sub"))
        with pytest.raises(NotADirectory):
            await host.open_file(fid, (*path, "secret"))
    for name in ("secret", "fifo", "out"):
        with pytest.raises(NotAFile):
            await host.open_file(fid, (name,))
        with pytest.raises(NotAFile):
            await host.upload_file(fid, (name,), chunks(b"x"))
    usage = await host.usage(fid)
    assert usage.size_bytes == 0  # links and FIFOs count as entries, not bytes
    await host.delete_files(fid, [("out",), ("secret",), ("dir",), ("fifo",)], recursive=True)
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_text() == "secret"
    assert await host.list_files(fid, ()) == []
    (data / "again").symlink_to(outside)
    await host.delete_folder(fid)
    assert (outside / "secret").read_text() == "secret"


async def test_a_symlinked_folder_root_is_refused(host: LocalHost, tmp_path: Path) -> None:
    fid = uuid.uuid4().hex
    await host.create_folder(fid)
    data = host.root / fid / "data"
    data.rmdir()
    data.symlink_to(tmp_path)
    with pytest.raises(OSError):
        await host.list_files(fid, ())


async def test_a_session_made_tree_thousands_of_levels_deep(host: LocalHost) -> None:
    """A session can nest directories far deeper than Python's recursion limit in a
    mounted folder; measuring, deleting inside and deleting the folder still work."""
    fid = uuid.uuid4().hex
    await host.create_folder(fid)
    fd = os.open(host.root / fid / "data", os.O_RDONLY | os.O_DIRECTORY)
    for name in ("keep", "drop"):
        level = os.dup(fd)
        for _ in range(2500):
            os.mkdir(name, dir_fd=level)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=level)
            os.close(level)
            level = child
        os.close(level)
    os.close(fd)
    try:
        usage = await host.usage(fid)
        assert (usage.size_bytes, usage.file_count) == (0, 5000)
        await host.delete_files(fid, [("drop",)], recursive=True)
        assert (await host.usage(fid)).file_count == 2500
        await host.delete_folder(fid)
        assert not (host.root / fid).exists()
    finally:
        # pytest's clean-up of old temporary folders recurses: never leave the tree.
        root = os.open(host.root, os.O_RDONLY)
        fstree.remove_tree(root, fid)
        os.close(root)
