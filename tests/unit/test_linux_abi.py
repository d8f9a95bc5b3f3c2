"""Structures written as the kernel's uapi headers declare them."""

from __future__ import annotations

import ctypes

import pytest

from crucible.plugins.storage.linux_abi import c_fields


def test_members_arrays_and_nested_structures() -> None:
    class Inner(ctypes.Structure):
        _fields_ = c_fields("__u32 a, b;")

    class Outer(ctypes.Structure):
        _fields_ = c_fields(
            "__s8 tag; unsigned char pad[3]; struct inner one, two; unsigned long n;",
            inner=Inner,
        )

    assert [name for name, _ in Outer._fields_] == ["tag", "pad", "one", "two", "n"]
    assert ctypes.sizeof(Inner) == 8
    assert Outer.two.offset == 12
    assert Outer.n.offset == 24  # 8-aligned after 20 bytes
    assert ctypes.sizeof(Outer) == 32


@pytest.mark.parametrize("declarations", ["__u128 x;", "__u32 2x;", "__u32 a[b];", "__u32;"])
def test_what_it_cannot_read_is_refused(declarations: str) -> None:
    with pytest.raises(ValueError):
        c_fields(declarations)
