"""Walks over trees a session wrote: deep, full of links and odd files, and changing."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from crucible import fstree


@pytest.fixture
def root_fd(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "tree").mkdir()
    fd = os.open(tmp_path / "tree", os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)


def _deep(fd: int, depth: int, name: str = "d") -> None:
    """A chain of `depth` directories below `fd`, a 3-byte file at the bottom."""
    fd = os.dup(fd)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        with open(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "wb") as f:
            f.write(b"abc")
    finally:
        os.close(fd)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_tree_thousands_of_levels_deep_is_measured_and_removed(
    tmp_path: Path, root_fd: int
) -> None:
    _deep(root_fd, 3000)
    before = _open_fds()
    peak = 0

    def watch(fd: int, entries: list[fstree.Entry]) -> None:
        nonlocal peak
        peak = max(peak, _open_fds())

    parent = os.open(tmp_path, os.O_RDONLY)
    try:
        fstree.traverse(root_fd, watch)
        assert peak - before <= fstree.MAX_OPEN + 2  # bounded, however deep
        assert fstree.tree_usage(root_fd) == (3, 3001)
    finally:
        # (pytest's own clean-up of old temporary folders recurses: leave no deep tree)
        fstree.remove_tree(parent, "tree")
        os.close(parent)
    assert not (tmp_path / "tree").exists()
    assert _open_fds() == before


def test_links_and_special_files_are_entries_never_followed(tmp_path: Path, root_fd: int) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"x" * 1000)
    tree = tmp_path / "tree"
    (tree / "to-dir").symlink_to(outside)
    (tree / "to-file").symlink_to(outside / "secret")
    os.link(outside / "secret", tree / "hard")
    os.mkfifo(tree / "fifo")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tree / "sock"))
    try:
        # Links count as entries; the hard link's bytes are the tree's (it holds them).
        assert fstree.tree_usage(root_fd) == (1000, 5)
        parent = os.open(tmp_path, os.O_RDONLY)
        try:
            fstree.remove_tree(parent, "tree")
        finally:
            os.close(parent)
    finally:
        listener.close()
    assert not tree.exists()
    assert (outside / "secret").read_bytes() == b"x" * 1000
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


def test_a_symlink_in_place_of_the_tree_is_removed_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kept").write_text("kept")
    (tmp_path / "tree").symlink_to(outside)
    parent = os.open(tmp_path, os.O_RDONLY)
    try:
        fstree.remove_tree(parent, "tree")
        fstree.remove_tree(parent, "missing")
    finally:
        os.close(parent)
    assert not (tmp_path / "tree").is_symlink()
    assert (outside / "kept").read_text() == "kept"


@pytest.mark.parametrize("operation", ["usage", "remove"])
def test_moving_directories_out_during_the_walk_never_leads_outside(
    tmp_path: Path, root_fd: int, operation: str
) -> None:
    """A thread (the session) moves a directory of the tree out of it and back as fast
    as it can, while walks with few descriptors climb back up through "..": they may
    stop (TreeChanged) but never touch what lies outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "marker").write_text("intact")
    tree = tmp_path / "tree"
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            try:
                os.rename(tree / "a" / "b", outside / "b")
                os.rename(outside / "b", tree / "a" / "b")
            except OSError:
                pass

    outcomes: set[str] = set()
    for _ in range(20):
        shutil.rmtree(tree / "a", ignore_errors=True)
        shutil.rmtree(outside / "b", ignore_errors=True)
        (tree / "a" / "b").mkdir(parents=True)
        sub = os.open(tree / "a" / "b", os.O_RDONLY)
        _deep(sub, 40)
        os.close(sub)
        thread = threading.Thread(target=swap)
        thread.start()
        try:
            if operation == "usage":
                fstree.tree_usage(root_fd)
            else:
                fstree.remove_tree(root_fd, "a", max_open=2)
            outcomes.add("done")
        except fstree.TreeChanged:
            outcomes.add("changed")
        except OSError as exc:
            # The thread kept putting `b` back: removal gives up after a few passes.
            assert exc.errno == errno.ENOTEMPTY and operation == "remove"
            outcomes.add("refilled")
        finally:
            stop.set()
            thread.join()
            stop.clear()
        assert (outside / "marker").read_text() == "intact"
        assert {p.name for p in outside.iterdir()} <= {"marker", "b"}
    assert outcomes
