"""Validating what clients name: folders, paths inside them, mount aliases."""

from __future__ import annotations

import re

from crucible import errors
from crucible.hookspecs.storage import RelPath

#: The client's own rule (spec 6.1), enforced again here.
NAME_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?$")
MAX_NAME_LENGTH = 64
#: Sub-paths of /folders matched before /folders/:name (spec 6.2).
RESERVED_NAMES = frozenset({"invitations", "create"})
#: A mount alias is one directory under /home/work.
ALIAS_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")
#: Longest path accepted inside a folder, and longest component (NAME_MAX).
MAX_PATH_LENGTH = 4096
MAX_COMPONENT_BYTES = 255


def check_folder_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise errors.InvalidAPIParameters("'name' is required and must be a string.")
    if len(name) > MAX_NAME_LENGTH or not NAME_RE.match(name):
        raise errors.InvalidAPIParameters(
            "A folder name is 1-64 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit."
        )
    if name in RESERVED_NAMES:
        raise errors.InvalidAPIParameters(f"{name!r} is a reserved name.")
    return name


def parse_path(raw: object, *, key: str = "path", allow_root: bool = True) -> RelPath:
    """A client's path inside a folder → components, or 400.

    Relative only: absolute paths, ``..`` and NUL are refused rather than "fixed", so a
    client never writes somewhere other than where it thinks. Empty and ``.``
    components are dropped (``a//b/./c`` is ``a/b/c``; ``.`` is the root).
    """
    if not isinstance(raw, str):
        raise errors.InvalidAPIParameters(f"'{key}' must be a string.")
    if "\x00" in raw:
        raise errors.InvalidAPIParameters(f"'{key}' must not contain NUL characters.")
    if len(raw.encode("utf-8", "surrogateescape")) > MAX_PATH_LENGTH:
        raise errors.InvalidAPIParameters(f"'{key}' is too long.")
    if raw.startswith("/"):
        raise errors.InvalidAPIParameters(f"'{key}' must be relative to the folder: {raw!r}.")
    parts = tuple(p for p in raw.split("/") if p not in ("", "."))
    for part in parts:
        if part == "..":
            raise errors.InvalidAPIParameters(f"'{key}' must not contain '..': {raw!r}.")
        if len(part.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES:
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
    if not ALIAS_RE.match(alias) or alias in (".", ".."):
        raise errors.InvalidAPIParameters(
            f"Mount alias {alias!r} must be one directory name under /home/work."
        )
    return name, alias
