"""The environment a claimed warm-pool kernel's session gets (the ``environ`` message).

The agent checked it already (the manager's `config.environ` rules); the runner checks
again that it is names and values it can put in a process's environment.
"""

from __future__ import annotations

import os
from typing import Any, Protocol


def checked_environ(value: Any) -> dict[str, str]:
    """`value` as environment entries; ValueError when it cannot be one."""
    if not isinstance(value, dict):
        raise ValueError("environ must be an object")
    environ: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str) or not isinstance(text, str):
            raise ValueError("environ names and values must be strings")
        if not name or "=" in name or "\0" in name or "\0" in text:
            raise ValueError(f"not an environment entry: {name!r}")
        environ[name] = text
    return environ


class _Child(Protocol):
    alive: bool

    def update_environ(self, environ: dict[str, str]) -> None: ...


def apply_environ(value: Any, child: _Child | None) -> None:
    """A warm pool's kernel, claimed by a session: its environment `value`, for every
    process started for the user from now on (the live interpreter `child` too)."""
    environ = checked_environ(value)
    os.environ.update(environ)
    if child is not None and child.alive:
        child.update_environ(environ)
