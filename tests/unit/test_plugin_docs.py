"""docs/plugins.md documents every hook and every member of every plugin Protocol.

In the datasette manner: a hook (or a Protocol method a plugin must implement) that a
contributor adds without documenting it fails this test, so the page plugin authors
read can never fall behind the hookspec modules.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from types import ModuleType

import pytest

from crucible.hookspecs.markers import PROJECT_NAME
from crucible.plugin_manager import PLUGIN_KINDS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
_SPEC_MARK = f"{PROJECT_NAME}_spec"


def _hooks(module: ModuleType) -> list[str]:
    return [
        name
        for name, value in vars(module).items()
        if inspect.isfunction(value) and hasattr(value, _SPEC_MARK)
    ]


def _protocol_members(module: ModuleType) -> list[str]:
    """Public members of the Protocols a plugin module defines (not those it imports)."""
    members = []
    for value in vars(module).values():
        if not (
            inspect.isclass(value)
            and value.__module__ == module.__name__
            and getattr(value, "_is_protocol", False)
            and value is not typing.Protocol
        ):
            continue
        names = set(vars(value).get("__annotations__", {})) | {
            name for name, member in vars(value).items() if inspect.isfunction(member)
        }
        public = sorted(name for name in names if not name.startswith("_"))
        members += [f"{value.__name__}.{name}" for name in public]
    return members


SPECS = [(kind, module) for kind, (_group, module) in PLUGIN_KINDS.items()]


@pytest.mark.parametrize(("kind", "module"), SPECS, ids=[kind for kind, _ in SPECS])
def test_every_hook_is_documented(kind: str, module: ModuleType) -> None:
    text = DOCS.read_text()
    hooks = _hooks(module)
    assert hooks, f"the {kind} hookspec module declares no hook"
    missing = [hook for hook in hooks if f"`{hook}(" not in text]
    assert not missing, f"docs/plugins.md does not document the {kind} hooks {missing}"


@pytest.mark.parametrize(("kind", "module"), SPECS, ids=[kind for kind, _ in SPECS])
def test_every_protocol_member_is_documented(kind: str, module: ModuleType) -> None:
    text = DOCS.read_text()
    missing = [
        member for member in _protocol_members(module) if f"`{member.split('.')[1]}" not in text
    ]
    assert not missing, f"docs/plugins.md does not mention the {kind} members {missing}"
