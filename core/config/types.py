"""The value types of configuration keys: each NewType gets a strict check when loaded
(`crucible.config.converter`), so a section's annotations say what a key accepts."""

from __future__ import annotations

import os
import re
from typing import NewType

PositiveInt = NewType("PositiveInt", int)
NonNegativeInt = NewType("NonNegativeInt", int)
PositiveFloat = NewType("PositiveFloat", float)
NonNegativeFloat = NewType("NonNegativeFloat", float)
#: A non-empty list of positive seconds: the waits before successive retries, the last
#: one repeating (kept as a tuple).
Delays = NewType("Delays", tuple[float, ...])
HostPort = NewType("HostPort", str)
LogLevel = NewType("LogLevel", str)
PathPrefix = NewType("PathPrefix", str)
#: A file system path; a relative one is resolved against the working directory when
#: the configuration loads, and ``~`` is expanded.
LocalPath = NewType("LocalPath", str)
AccessKey = NewType("AccessKey", str)
SecretKey = NewType("SecretKey", str)
PluginOptions = NewType("PluginOptions", dict)  # type: ignore[type-arg]
#: A number of bytes written as ``"16GiB"``, ``"512MiB"``, ``"4096"`` or an integer.
ByteSize = NewType("ByteSize", int)

ACCESS_KEY_RE = re.compile(r"^[A-Z0-9]{20}$")
SECRET_KEY_RE = re.compile(r"^[A-Za-z0-9_\-/+=]{40}$")
#: Names of storage hosts: how clients address them (vfolder create's ``host``).
STORAGE_HOST_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MiB = 1024 * 1024
GiB = 1024 * MiB
BYTE_UNITS = {"": 1, "B": 1, "KiB": 1024, "MiB": MiB, "GiB": GiB, "TiB": 1024 * GiB}

DEFAULT_BIND = "127.0.0.1:8081"


def absolute_path(value: str) -> str:
    """`value` with ``~`` expanded and, when relative, taken from the working directory
    (the directory the command was started in, as a shell user expects)."""
    return os.path.abspath(os.path.expanduser(value))


def default_state_dir() -> str:
    return absolute_path("~/.local/state/crucible")
