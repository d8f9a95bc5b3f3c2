"""Validating what clients name: folders, paths inside them, mounts, invitees."""

from __future__ import annotations

import re
from typing import Any

from crucible import errors
from crucible.hookspecs.storage import RelPath
from crucible.keypairs import MAX_USER_ID_LENGTH
from crucible.validation import bounded_list, text

#: The client's own rule (spec 6.1), enforced again here.
NAME_RE = re.compile(r"[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?")
MAX_NAME_LENGTH = 64
#: Sub-paths of /folders matched before /folders/:name (spec 6.2).
RESERVED_NAMES = frozenset({"invitations", "create"})
#: A mount alias is one directory under /home/work.
ALIAS_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
#: Spec 4.2: at most this many folders per session (the agent holds to it too).
MAX_MOUNTS = 5
#: Longest path accepted inside a folder, and longest component (NAME_MAX).
MAX_PATH_LENGTH = 4096
MAX_COMPONENT_BYTES = 255


def check_folder_ref(name: object, field: str = "name") -> str:
    """A name that could belong to a folder (URL path segments, mounts): the syntax
    only, so a malformed one is a 400 before any lookup, a missing one a 404 after."""
    if not isinstance(name, str) or not name:
        raise errors.InvalidAPIParameters(f"'{field}' is required and must be a string.")
    if len(name) > MAX_NAME_LENGTH or not NAME_RE.fullmatch(name):
        raise errors.InvalidAPIParameters(
            f"'{field}': a folder name is 1-64 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit."
        )
    return name


def check_folder_name(name: object) -> str:
    """The name of a folder to create: `check_folder_ref`, and not a reserved word."""
    name = check_folder_ref(name)
    if name in RESERVED_NAMES:
        raise errors.InvalidAPIParameters(f"{name!r} is a reserved name.")
    return name


def parse_path(raw: object, *, key: str = "path", allow_root: bool = True) -> RelPath:
    """A client's path inside a folder → components, or 400.

    Relative only: absolute paths, ``..`` and NUL are refused rather than "fixed", so a
    client never writes somewhere other than where it thinks. Empty and ``.``
    components are dropped (``a//b/./c`` is ``a/b/c``; ``.`` is the root).
    """
    raw = text(raw, key, max_bytes=MAX_PATH_LENGTH)
    if raw.startswith("/"):
        raise errors.InvalidAPIParameters(f"'{key}' must be relative to the folder: {raw!r}.")
    parts = tuple(p for p in raw.split("/") if p not in ("", "."))
    for part in parts:
        if part == "..":
            raise errors.InvalidAPIParameters(f"'{key}' must not contain '..': {raw!r}.")
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            raise errors.InvalidAPIParameters(f"A name in '{key}' is too long.")
    if not parts and not allow_root:
        raise errors.InvalidAPIParameters(f"'{key}' must name an entry inside the folder.")
    return parts


def parse_mount(entry: object) -> tuple[str, str]:
    """``"name"`` or ``"name:alias"`` (spec 4.2) → ``(folder name, directory name)``."""
    if not isinstance(entry, str) or not entry:
        raise errors.InvalidAPIParameters("'config.mounts' must be a list of folder names.")
    name, sep, alias = entry.partition(":")
    if not sep:
        alias = name
    check_folder_ref(name, "config.mounts")
    if not ALIAS_RE.fullmatch(alias) or alias in (".", ".."):
        raise errors.InvalidAPIParameters(
            f"Mount alias {alias[:80]!r} must be one directory name under /home/work."
        )
    return name, alias


def parse_mounts(raw: object) -> list[tuple[str, str]]:
    """``config.mounts`` (null, or a list of at most `MAX_MOUNTS` entries) → pairs."""
    if raw is None:
        return []
    entries = bounded_list(raw, "config.mounts", max_items=MAX_MOUNTS, allow_empty=True)
    mounts = [parse_mount(entry) for entry in entries]
    aliases = [alias for _, alias in mounts]
    if len(set(aliases)) != len(aliases):
        raise errors.InvalidAPIParameters("Two folders in 'config.mounts' share one directory.")
    return mounts


def check_user_ids(raw: object, max_items: int) -> list[str]:
    """Invitees (spec 6.11): a bounded list of user ids, duplicates dropped."""
    entries: list[Any] = bounded_list(
        raw, "user_ids", max_items=max_items, limit_key="max_invitees"
    )
    for entry in entries:
        text(entry, "user_ids", max_bytes=4 * MAX_USER_ID_LENGTH, allow_empty=False)
        if len(entry) > MAX_USER_ID_LENGTH:
            raise errors.InvalidAPIParameters(
                f"A user id in 'user_ids' is longer than {MAX_USER_ID_LENGTH} characters."
            )
    return list(dict.fromkeys(entries))
