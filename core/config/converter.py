"""Turning a parsed TOML document into `Config`: strict cattrs hooks and readable errors.

cattrs' defaults coerce ("3" → 3, "no" → True); a config file should say what it means,
so every scalar is checked for its exact type, and each NewType of
`crucible.config.types` for its range or form.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
from collections.abc import Callable
from typing import Any

import cattrs

from crucible.config import types as kinds

Hook = Callable[[Any, Any], Any]


def _strict(kind: type, *, allow: tuple[type, ...] = ()) -> Hook:
    def hook(value: Any, _: Any) -> Any:
        if isinstance(value, bool) and kind is not bool:
            raise ValueError(f"expected {kind.__name__}, got a boolean")
        if not isinstance(value, (kind, *allow)):
            raise ValueError(f"expected {kind.__name__}, got {type(value).__name__}")
        return kind(value)

    return hook


def _checked(base: Hook, check: Callable[[Any], bool], message: str) -> Hook:
    def hook(value: Any, _: Any) -> Any:
        value = base(value, None)
        if not check(value):
            raise ValueError(message)
        return value

    return hook


def _valid_host_port(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return False
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return re.fullmatch(r"[A-Za-z0-9.-]+", host) is not None
    return True


def _delays(value: Any, _: Any) -> kinds.Delays:
    message = "must be a non-empty list of positive numbers of seconds"
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(message)
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise ValueError(message)
        if not 0 < item < math.inf:
            raise ValueError(message)
    return kinds.Delays(tuple(float(item) for item in value))


def _local_path(value: Any, _: Any) -> kinds.LocalPath:
    if not isinstance(value, str) or isinstance(value, bool):
        raise ValueError(f"expected str, got {type(value).__name__}")
    if not value or "\0" in value:
        raise ValueError("must be a directory path")
    return kinds.LocalPath(kinds.absolute_path(value))


def _plugin_options(value: Any, _: Any) -> kinds.PluginOptions:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError("expected a table")
    return kinds.PluginOptions(dict(value))


_BYTE_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]iB|B)?\s*$")


def _byte_size(value: Any, _: Any) -> kinds.ByteSize:
    message = 'must be a number of bytes, e.g. 17179869184 or "16GiB" (B, KiB, MiB, GiB, TiB)'
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(message)
        return kinds.ByteSize(value)
    if not isinstance(value, str) or (match := _BYTE_SIZE_RE.match(value)) is None:
        raise ValueError(message)
    return kinds.ByteSize(int(match[1]) * kinds.BYTE_UNITS[match[2] or ""])


def make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    strict_int = _strict(int)
    strict_float = _strict(float, allow=(int,))
    strict_str = _strict(str)
    conv.register_structure_hook(int, strict_int)
    conv.register_structure_hook(float, strict_float)
    conv.register_structure_hook(str, strict_str)
    conv.register_structure_hook(bool, _strict(bool))
    conv.register_structure_hook(
        kinds.PositiveInt, _checked(strict_int, lambda v: v > 0, "must be a positive integer")
    )
    conv.register_structure_hook(
        kinds.NonNegativeInt, _checked(strict_int, lambda v: v >= 0, "must be zero or more")
    )
    conv.register_structure_hook(
        kinds.PositiveFloat, _checked(strict_float, lambda v: v > 0, "must be a positive number")
    )
    conv.register_structure_hook(
        kinds.NonNegativeFloat,
        _checked(strict_float, lambda v: 0 <= v < float("inf"), "must be zero or more"),
    )
    conv.register_structure_hook(kinds.Delays, _delays)
    conv.register_structure_hook(
        kinds.HostPort, _checked(strict_str, _valid_host_port, "must be HOST:PORT")
    )
    conv.register_structure_hook(
        kinds.LogLevel,
        _checked(
            strict_str,
            lambda v: v.upper() in logging.getLevelNamesMapping(),
            "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        ),
    )
    conv.register_structure_hook(
        kinds.PathPrefix,
        _checked(
            strict_str,
            lambda v: v == "" or (v.startswith("/") and not v.endswith("/")),
            "must be empty or start with '/' and not end with '/'",
        ),
    )
    conv.register_structure_hook(kinds.LocalPath, _local_path)
    conv.register_structure_hook(kinds.PluginOptions, _plugin_options)
    conv.register_structure_hook(kinds.ByteSize, _byte_size)
    return conv


# -- error messages ----------------------------------------------------------------------

_EXTRA_RE = re.compile(r"^extra fields found \((?P<names>.*)\) @ (?P<path>.*)$")


def _path_to_dotted(path: str) -> str:
    path = path.removeprefix("$").removeprefix(".")
    # Keys of dict-valued tables (storage.hosts) read as TOML writes them: a.b.NAME.c.
    path = re.sub(r"\['([^']*)'\]", r".\1", path)
    return path or "(top level)"


def readable(messages: list[str]) -> list[str]:
    """cattrs' transformed messages as ``a.b.c: message`` lines."""
    problems = []
    for message in messages:
        if match := _EXTRA_RE.match(message):
            base = _path_to_dotted(match["path"])
            for name in match["names"].split(", "):
                key = name if base == "(top level)" else f"{base}.{name}"
                problems.append(f"{key}: unknown key")
            continue
        text, _, path = message.rpartition(" @ ")
        text = text.removeprefix("invalid value for type, ")
        problems.append(f"{_path_to_dotted(path)}: {text}")
    return problems


def format_exception(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, KeyError):
        return "required key missing"
    if isinstance(exc, ValueError):
        return str(exc)
    return cattrs.v.format_exception(exc, type_)
