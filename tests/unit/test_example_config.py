"""crucible.example.toml documents every key, with the real defaults."""

import tomllib
import typing
from pathlib import Path

import attrs

from crucible.config import Config, config_from_dict

EXAMPLE = Path(__file__).resolve().parents[2] / "crucible.example.toml"


def _table_of_tables(field_type: object) -> type | None:
    """The attrs class of a ``dict[str, SomeConfig]`` field (storage.hosts), else None."""
    if typing.get_origin(field_type) is dict:
        value_type = typing.get_args(field_type)[1]
        if isinstance(value_type, type) and attrs.has(value_type):
            attrs.resolve_types(value_type)
            return value_type
    return None


def _keys(cls: type, prefix: str = "") -> set[str]:
    keys = set()
    for field in attrs.fields(cls):
        if attrs.has(field.type) if isinstance(field.type, type) else False:
            keys |= _keys(field.type, f"{prefix}{field.name}.")
        elif (item_cls := _table_of_tables(field.type)) is not None:
            # A table of named tables is documented through one example entry: NAME = *.
            keys |= _keys(item_cls, f"{prefix}{field.name}.*.")
        else:
            keys.add(prefix + field.name)
    return keys


def _table_of_table_prefixes(cls: type, prefix: str = "") -> set[str]:
    found = set()
    for field in attrs.fields(cls):
        if isinstance(field.type, type) and attrs.has(field.type):
            found |= _table_of_table_prefixes(field.type, f"{prefix}{field.name}.")
        elif _table_of_tables(field.type) is not None:
            found.add(f"{prefix}{field.name}.")
    return found


def _flatten(data: dict[str, typing.Any], prefix: str = "") -> set[str]:
    keys = set()
    wildcards = _table_of_table_prefixes(Config)
    for key, value in data.items():
        name = "*" if prefix in wildcards else key
        if isinstance(value, dict) and value:
            keys |= _flatten(value, f"{prefix}{name}.")
        else:
            # An empty table is a documented key of its own (a free-form table).
            keys.add(prefix + name)
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
