"""Walks over trees a session wrote: deep, full of links and odd files, and changing."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
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


# -- one path, component by component -----------------------------------------------------


def test_a_path_is_walked_without_crossing_a_link(tmp_path: Path, root_fd: int) -> None:
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "file").write_text("x")
    (tmp_path / "outside").mkdir()
    (tree / "a" / "link").symlink_to(tmp_path / "outside")
    before = _open_fds()
    fd = fstree.walk_dirs(root_fd, ["a", "b"])
    try:
        assert os.fstat(fd).st_ino == (tree / "a" / "b").stat().st_ino
    finally:
        os.close(fd)
    refusals = {}
    for name in ("link", "file", "missing"):
        with pytest.raises(fstree.NotEntered) as info:
            fstree.walk_dirs(root_fd, ["a", name, "deeper"])
        refusals[name] = info.value
    assert _open_fds() == before  # nothing left open by a refused walk
    assert {name: (exc.depth, exc.step) for name, exc in refusals.items()} == {
        name: (1, "open") for name in refusals
    }
    # Linux answers ENOTDIR for a link opened with O_DIRECTORY | O_NOFOLLOW (ELOOP
    # without O_DIRECTORY): what lstat found tells a link from a file.
    assert refusals["link"].errno in (errno.ELOOP, errno.ENOTDIR)
    assert refusals["link"].found is not None and stat.S_ISLNK(refusals["link"].found.st_mode)
    assert refusals["file"].errno == errno.ENOTDIR
    assert refusals["file"].found is not None and stat.S_ISREG(refusals["file"].found.st_mode)
    assert refusals["missing"].errno == errno.ENOENT and refusals["missing"].found is None


def test_a_walk_that_creates_hands_each_new_directory_over(tmp_path: Path, root_fd: int) -> None:
    (tmp_path / "tree" / "a").mkdir()
    made: list[int] = []
    entered: list[int] = []
    fd = fstree.walk_dirs(
        root_fd,
        ["a", "b", "c"],
        make=lambda new_fd: made.append(os.fstat(new_fd).st_ino),
        entered=lambda _fd, depth: entered.append(depth),
    )
    os.close(fd)
    tree = tmp_path / "tree"
    assert made == [(tree / "a" / "b").stat().st_ino, (tree / "a" / "b" / "c").stat().st_ino]
    assert entered == [0, 1, 2]
    assert stat.S_IMODE((tree / "a" / "b").stat().st_mode) == 0o755 & ~_umask()
    # A link stays a refusal even for a walk that creates: it is never replaced.
    (tree / "to-outside").symlink_to(tmp_path)
    with pytest.raises(fstree.NotEntered) as info:
        fstree.walk_dirs(root_fd, ["to-outside", "x"], make=lambda new_fd: None)
    assert info.value.step == "open" and info.value.errno in (errno.ELOOP, errno.ENOTDIR)
    assert not (tmp_path / "x").exists()


def test_a_directory_that_cannot_be_made_says_so() -> None:
    # procfs refuses mkdir (to root too), after the open found nothing under the name.
    proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(fstree.NotEntered) as info:
            fstree.walk_dirs(proc, ["crucible-no-such-dir"], make=lambda new_fd: None)
    finally:
        os.close(proc)
    assert (info.value.step, info.value.depth) == ("mkdir", 0)
    assert info.value.error.errno == info.value.errno != 0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
