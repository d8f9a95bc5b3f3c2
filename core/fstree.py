"""Walking paths and directory trees that untrusted code writes.

Sessions write these trees (vfolders, ``/home/work``) and may rearrange them, plant
symbolic links in them, at any moment, while the manager or the agent, both root, walks
them. So no path into them is ever handed to the kernel's path resolution: `walk_dirs`
opens a path one component at a time, each relative to the descriptor of the one before,
and the final operation is relative to the last descriptor (``*at`` calls). Every walk
here

* never follows a symbolic link: each directory is opened with ``O_NOFOLLOW``
  relative to its parent's descriptor, and entries are looked at with ``lstat``;
* has no recursion and holds at most `MAX_OPEN` directory descriptors however deep
  the tree goes. `os.fwalk` and `shutil.rmtree` recurse: a tree a few thousand levels
  deep, which any session can make in a second, raises ``RecursionError`` in them
  (a folder that can never be deleted, a usage sampler that stops for every tenant),
  and a deep one short of that holds one descriptor per level;
* goes back up to a directory whose descriptor it let go by opening ``..`` from the
  child and checking that it is the same directory (device and inode) it left. When
  a session moved a directory meanwhile, the walk raises `TreeChanged` instead of
  carrying on somewhere else, possibly outside the tree.

A component that cannot be entered (missing, a link, a file) is a `NotEntered` that
says which and how; each caller turns it into its own error (the agent's file
operations and the ``local`` storage plugin answer in their own terms).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Sequence

#: Directory descriptors one walk holds at most.
MAX_OPEN = 32
#: Whole-tree attempts `remove_tree` makes while a session keeps adding entries.
REMOVE_ATTEMPTS = 3

#: Opening a directory in a tree: a link there is refused, never followed.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Opening a file in a tree for reading: never through a link, and O_NONBLOCK so that a
#: FIFO planted under the name cannot hang the reader.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
#: What a failed directory open says when nothing, a link (``O_NOFOLLOW``) or a
#: non-directory stands under the name.
REFUSED_ERRNOS = (errno.ENOENT, errno.ELOOP, errno.ENOTDIR)

Entry = tuple[str, os.stat_result]


class TreeChanged(OSError):
    """A directory moved while the tree was walked; the walk stopped."""


# -- one path, component by component ----------------------------------------------------


class NotEntered(OSError):
    """Component `depth` (an index into the walked parts) could not be entered.

    `step` names the call that failed: ``open`` (the directory that was there),
    ``mkdir`` (making a missing one) or ``reopen`` (opening the one just made, or made
    meanwhile); `errno` and `strerror` are its own, `error` is its exception. When an
    open failed with one of `REFUSED_ERRNOS`, `found` is what ``lstat`` saw under the name
    right after (``None``: nothing) and `found_error` the ``lstat`` error other than
    "no such file", if any.
    """

    def __init__(
        self,
        error: OSError,
        depth: int,
        step: str,
        found: os.stat_result | None = None,
        found_error: OSError | None = None,
    ) -> None:
        super().__init__(error.errno, error.strerror)
        self.error = error
        self.depth = depth
        self.step = step
        self.found = found
        self.found_error = found_error


def open_dir(parent_fd: int, name: str, *, depth: int = 0, step: str = "open") -> int:
    """A new descriptor of directory `name` in `parent_fd`, never following a link;
    `NotEntered` (with `depth` and `step`) when it cannot be opened."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno not in REFUSED_ERRNOS:
            raise NotEntered(exc, depth, step) from None
        error = exc
    # Looked at only now, and never followed: what the caller reports, not a decision.
    try:
        found = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise NotEntered(error, depth, step) from None
    except OSError as lstat_error:
        raise NotEntered(error, depth, step, found_error=lstat_error) from None
    raise NotEntered(error, depth, step, found)


def walk_dirs(
    root_fd: int,
    parts: Sequence[str],
    *,
    make: Callable[[int], None] | None = None,
    entered: Callable[[int, int], None] | None = None,
) -> int:
    """A new descriptor of the directory `parts` below `root_fd`, without following links.

    With `make`, a missing directory is made (mode 0755) and its new descriptor given to
    ``make(fd)`` (to hand it to the session's user, say); without it a missing one is a
    `NotEntered`. ``entered(fd, depth)`` is called on every directory on the way, made
    or found, and may raise to refuse it. The caller closes the returned descriptor.
    """
    fd = os.dup(root_fd)
    try:
        for depth, name in enumerate(parts):
            next_fd = _enter(fd, name, depth, make)
            os.close(fd)
            fd = next_fd
            if entered is not None:
                entered(fd, depth)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _enter(parent_fd: int, name: str, depth: int, make: Callable[[int], None] | None) -> int:
    try:
        return open_dir(parent_fd, name, depth=depth)
    except NotEntered as exc:
        if make is None or exc.errno != errno.ENOENT:
            raise
    try:
        os.mkdir(name, 0o755, dir_fd=parent_fd)
    except FileExistsError:
        pass  # made meanwhile (by the session?): open it like any other, never following
    except OSError as exc:
        raise NotEntered(exc, depth, "mkdir") from None
    fd = open_dir(parent_fd, name, depth=depth, step="reopen")
    try:
        make(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


# -- whole trees --------------------------------------------------------------------------


class _Frame:
    __slots__ = ("fd", "ident", "name", "subdirs")

    def __init__(self, fd: int, name: str, subdirs: list[str]) -> None:
        st = os.fstat(fd)
        self.fd = fd
        self.ident = (st.st_dev, st.st_ino)
        self.name = name
        self.subdirs = subdirs


def _entries(fd: int) -> list[Entry]:
    found = []
    for name in os.listdir(fd):
        try:
            found.append((name, os.stat(name, dir_fd=fd, follow_symlinks=False)))
        except FileNotFoundError:
            continue  # removed while we looked
    return found


def traverse(
    root_fd: int,
    visit: Callable[[int, list[Entry]], None],
    *,
    leave: Callable[[int, str], None] | None = None,
    max_open: int = MAX_OPEN,
) -> None:
    """Call ``visit(dir_fd, entries)`` for the directory `root_fd` and every directory
    below it, top-down, with the ``lstat`` of each entry; then, bottom-up,
    ``leave(parent_fd, name)`` for every directory below the root.

    `visit` may change the directory (unlink entries); subdirectories are taken from
    the entries it was given. Directories that vanish or turn into something else
    before they are entered are skipped. Raises `TreeChanged` (see the module doc).
    """
    stack: list[_Frame] = []

    def enter(fd: int, name: str) -> None:
        try:
            entries = _entries(fd)
            stack.append(_Frame(fd, name, [n for n, st in entries if stat.S_ISDIR(st.st_mode)]))
        except BaseException:
            os.close(fd)
            raise
        # Let go of the oldest descriptors; they are found again through "..".
        for frame in stack[: max(0, len(stack) - max_open)]:
            if frame.fd >= 0:
                os.close(frame.fd)
                frame.fd = -1
        visit(fd, entries)

    try:
        enter(os.dup(root_fd), "")
        while stack:
            top = stack[-1]
            if top.subdirs:
                name = top.subdirs.pop()
                try:
                    child = os.open(name, DIR_FLAGS, dir_fd=top.fd)
                except OSError as exc:
                    if exc.errno in REFUSED_ERRNOS:
                        continue  # gone, or no longer a directory: nothing to walk
                    raise
                enter(child, name)
                continue
            stack.pop()
            if stack:
                parent = stack[-1]
                if parent.fd < 0:
                    parent.fd = _reopen_parent(top, parent)
                if leave is not None:
                    leave(parent.fd, top.name)
            os.close(top.fd)
            top.fd = -1
    finally:
        for frame in stack:
            if frame.fd >= 0:
                os.close(frame.fd)


def _reopen_parent(child: _Frame, parent: _Frame) -> int:
    fd = os.open("..", DIR_FLAGS, dir_fd=child.fd)
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != parent.ident:
        os.close(fd)
        raise TreeChanged(errno.ESTALE, "a directory was moved while the tree was walked")
    return fd


def remove_tree(parent_fd: int, name: str, *, max_open: int = MAX_OPEN) -> None:
    """Delete `name` in directory `parent_fd` and, if it is a directory, everything in
    it; a link is removed, never followed. Missing is fine. A session that keeps
    filling the directory meanwhile gets `REMOVE_ATTEMPTS` passes, then the
    ``ENOTEMPTY`` error."""

    def unlink_files(fd: int, entries: list[Entry]) -> None:
        for entry, st in entries:
            if not stat.S_ISDIR(st.st_mode):
                try:
                    os.unlink(entry, dir_fd=fd)
                except FileNotFoundError:
                    pass

    def rmdir(fd: int, entry: str) -> None:
        try:
            os.rmdir(entry, dir_fd=fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY:
                raise  # ENOTEMPTY: refilled meanwhile; the next attempt gets it

    for attempt in range(REMOVE_ATTEMPTS):
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=parent_fd)
            return
        try:
            root = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno in REFUSED_ERRNOS:
                continue  # replaced meanwhile: look again
            raise
        try:
            traverse(root, unlink_files, leave=rmdir, max_open=max_open)
        finally:
            os.close(root)
        try:
            os.rmdir(name, dir_fd=parent_fd)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY or attempt == REMOVE_ATTEMPTS - 1:
                raise


def tree_usage(root_fd: int) -> tuple[int, int]:
    """``(bytes in regular files, entries)`` below directory `root_fd`."""
    size = count = 0

    def add(fd: int, entries: list[Entry]) -> None:
        nonlocal size, count
        count += len(entries)
        size += sum(st.st_size for _, st in entries if stat.S_ISREG(st.st_mode))

    traverse(root_fd, add)
    return size, count
