"""crucible.example.toml documents every key, with the real defaults."""

import tomllib
from pathlib import Path

import attrs

from crucible.config import Config, config_from_dict

EXAMPLE = Path(__file__).resolve().parents[2] / "crucible.example.toml"


def _keys(cls: type, prefix: str = "") -> set[str]:
    keys = set()
    for field in attrs.fields(cls):
        if attrs.has(field.type) if isinstance(field.type, type) else False:
            keys |= _keys(field.type, f"{prefix}{field.name}.")
        else:
            keys.add(prefix + field.name)
    return keys


def _flatten(data: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in data.items():
        if isinstance(value, dict):
            keys |= _flatten(value, f"{prefix}{key}.")
        else:
            keys.add(prefix + key)
    return keys


def test_example_lists_every_key() -> None:
    attrs.resolve_types(Config)
    for field in attrs.fields(Config):
        if isinstance(field.type, type) and attrs.has(field.type):
            attrs.resolve_types(field.type)
    documented = _flatten(tomllib.loads(EXAMPLE.read_text()))
    assert documented == _keys(Config)


def test_example_values_are_the_defaults() -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    assert config_from_dict(data) == config_from_dict({"state_dir": data["state_dir"]})
