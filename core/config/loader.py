"""Loading the configuration: read the TOML file, lay command-line overrides over it,
structure it into `Config`, check it, and resolve its relative paths.

Every problem in the file is reported at once as ``file: a.b.c: message`` (see
`ConfigError`); unknown keys are errors, so a typo never passes silently.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs
import cattrs

from crucible.config.checks import config_problems
from crucible.config.converter import format_exception, make_converter, readable
from crucible.config.sections import Config
from crucible.config.types import absolute_path


class ConfigError(Exception):
    """All problems found in one configuration source, each as ``a.b.c: message``."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


_CONVERTER = make_converter()
T = TypeVar("T")


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return `base` with `overrides` laid over it, merging nested tables."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_from_dict(data: Mapping[str, Any], *, source: str = "<config>") -> Config:
    """Validate a parsed TOML document; raise `ConfigError` listing every problem."""
    try:
        config = _CONVERTER.structure(dict(data), Config)
    except cattrs.BaseValidationError as exc:
        messages = cattrs.transform_error(exc, path="$", format_exception=format_exception)
        raise ConfigError(source, readable(messages)) from None
    if problems := config_problems(config):
        raise ConfigError(source, problems)
    return _with_local_hosts_resolved(config)


def plugin_options(section: str, table: Mapping[str, Any], options_type: type[T]) -> T:
    """A plugin's table (e.g. ``[accelerators.mock]``) structured as strictly as the
    rest of the file into the plugin's attrs class; `ConfigError` lists every problem,
    each as ``section.key: message``."""
    try:
        return _CONVERTER.structure(dict(table), options_type)
    except cattrs.BaseValidationError as exc:
        messages = cattrs.transform_error(exc, path="$", format_exception=format_exception)
        problems = [
            f"{section}.{p}" if not p.startswith("(") else f"{section}: {p}"
            for p in readable(messages)
        ]
        raise ConfigError("configuration", problems) from None
    except (TypeError, ValueError) as exc:
        # The class's own validators (values that do not go together).
        raise ConfigError("configuration", [f"{section}: {exc}"]) from None


def _with_local_hosts_resolved(config: Config) -> Config:
    # A ``local`` host's path is a directory like state_dir; other plugins' paths may
    # mean something else (a bucket, a URL), so they reach their plugin as written.
    hosts = {
        name: attrs.evolve(host, path=absolute_path(host.path))
        if host.type == "local" and host.path
        else host
        for name, host in config.storage.hosts.items()
    }
    return attrs.evolve(config, storage=attrs.evolve(config.storage, hosts=hosts))


def load_config(
    path: Path | None,
    overrides: Mapping[str, Any] | None = None,
    *,
    command_defaults: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Read `path` (or nothing: all defaults), apply command-line `overrides`, validate.

    `command_defaults` (``{table: {key: value}}``) are a command's own defaults, used
    where the file does not set the key (``crucible up`` keeps a warm pool).
    """
    data: dict[str, Any] = {}
    source = str(path) if path else "<defaults>"
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(source, [f"cannot read: {exc.strerror}"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(source, [f"not valid TOML: {exc}"]) from None
    for table, keys in (command_defaults or {}).items():
        section = data.setdefault(table, {})
        if isinstance(section, dict):  # anything else is the converter's to refuse
            for key, value in keys.items():
                section.setdefault(key, value)
    return config_from_dict(deep_merge(data, overrides or {}), source=source)
