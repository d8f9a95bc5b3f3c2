"""Names, paths and mount aliases as clients send them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crucible import errors
from crucible.vfolders.paths import check_folder_name, parse_mount, parse_path


@pytest.mark.parametrize("name", ["a", "A1", "my.data_set-2", "x" * 64])
def test_good_names(name: str) -> None:
    assert check_folder_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "My Data", "-a", "a-", ".a", "x" * 65, "invitations", "create", "é", None, 3]
)
def test_bad_names(name: object) -> None:
    with pytest.raises(errors.InvalidAPIParameters):
        check_folder_name(name)


@pytest.mark.parametrize(
    ("raw", "parts"),
    [(".", ()), ("", ()), ("a", ("a",)), ("a//b/./c/", ("a", "b", "c")), ("é x", ("é x",))],
)
def test_paths(raw: str, parts: tuple[str, ...]) -> None:
    assert parse_path(raw) == parts


@pytest.mark.parametrize("raw", ["/etc", "..", "a/../b", "a\x00", "x/" * 3000, "a" * 256, 7])
def test_refused_paths(raw: object) -> None:
    with pytest.raises(errors.InvalidAPIParameters):
        parse_path(raw)


def test_root_is_refused_where_an_entry_is_needed() -> None:
    with pytest.raises(errors.InvalidAPIParameters):
        parse_path(".", allow_root=False)


@given(st.text())
def test_parsed_paths_never_escape(raw: str) -> None:
    try:
        parts = parse_path(raw)
    except errors.InvalidAPIParameters:
        return
    assert all(p not in ("", ".", "..") and "/" not in p and "\x00" not in p for p in parts)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("data", ("data", "data")),
        ("data:d", ("data", "d")),
        ("a:b:c", None),
        ("x:..", None),
        ("x:a/b", None),
        ("x:", None),
        ("", None),
        (None, None),
    ],
)
def test_mounts(entry: object, expected: tuple[str, str] | None) -> None:
    if expected is None:
        with pytest.raises(errors.InvalidAPIParameters):
            parse_mount(entry)
    else:
        assert parse_mount(entry) == expected
