"""The request-check vocabulary (crucible.validation) and the session request rules
(crucible.sessions.requests): what passes, what is refused, and that a refusal is
always a 400 naming the field, whatever the input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crucible import errors
from crucible.api.multipart import part_filename
from crucible.config import LimitsConfig
from crucible.sessions import requests as rules
from crucible.validation import bounded_list, check_json_tree, parse_json, text
from crucible.vfolders.paths import check_folder_ref, check_user_ids, parse_mounts

LIMITS = LimitsConfig()
any_text = st.text(st.characters(exclude_categories=()))


def refused(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(errors.InvalidAPIParameters) as caught:
        call(*args, **kwargs)
    assert caught.value.status == 400
    return str(caught.value.detail)


def test_text_bounds_and_characters() -> None:
    assert text("héllo", "f", max_bytes=6) == "héllo"
    assert "the limit is 5 (limits.k)" in refused(text, "héllo", "f", max_bytes=5, limit_key="k")
    assert "NUL" in refused(text, "a\x00", "f", max_bytes=10)
    assert text("a\x00", "f", max_bytes=10, allow_nul=True) == "a\x00"
    assert "surrogate" in refused(text, "\ud800", "f", max_bytes=10, allow_nul=True)
    assert "'f' must be a string" in refused(text, 3, "f", max_bytes=10)
    assert "empty" in refused(text, "", "f", max_bytes=10, allow_empty=False)


def test_bounded_list() -> None:
    assert bounded_list([1, 2], "xs", max_items=2) == [1, 2]
    assert "3 entries; the limit is 2" in refused(bounded_list, [1, 2, 3], "xs", max_items=2)
    assert "non-empty list" in refused(bounded_list, [], "xs", max_items=2)
    assert bounded_list([], "xs", max_items=2, allow_empty=True) == []
    refused(bounded_list, "abc", "xs", max_items=5)


@pytest.mark.parametrize(
    "raw",
    [b"[" * 33 + b"]" * 33, b'{"a": "\\ud800"}', b'["\\udc00x"]', b'{"\\ud800": 1}',
     b"1" * 5000, b"{", b"\xff", b"[" * 100_000],
)
def test_parse_json_refusals(raw: bytes) -> None:
    refused(parse_json, raw, max_depth=32)


def test_parse_json_accepts_what_it_should() -> None:
    assert parse_json(b"[" * 32 + b"]" * 32, max_depth=32) is not None
    assert parse_json('["\\ud83d\\ude00", "\\\\ud800"]', max_depth=32) == ["😀", "\\ud800"]
    assert parse_json(b'{"a": NaN}', max_depth=32)["a"] != 0


json_values = st.recursive(
    st.none() | any_text | st.integers(),
    lambda children: st.lists(children) | st.dictionaries(any_text, children),
    max_leaves=20,
)


@given(json_values)
def test_json_tree_check_matches_what_utf8_and_depth_allow(value: Any) -> None:
    raw = json.dumps(value)
    try:
        parsed = parse_json(raw, max_depth=4)
    except errors.InvalidAPIParameters:
        # Refused only for a reason: a lone surrogate somewhere, or nesting past 4.
        with pytest.raises(errors.InvalidAPIParameters):
            check_json_tree(value, max_depth=4)
        return
    assert parsed == value
    raw.encode("utf-8")  # no surrogate escapes survived
    json.dumps(parsed, ensure_ascii=False).encode("utf-8")


# -- sessions --------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["abcd", "a_b.c-d", "x" * 64, "0123", "_xy_"])
def test_good_tokens(token: str) -> None:
    assert rules.check_token(token) == token


@pytest.mark.parametrize(
    "token", ["abc", "x" * 65, "-abc", "abc.", "ab cd", "abcd\n", "ab\x00cd", "ünïc", None, 7]
)
def test_bad_tokens(token: object) -> None:
    assert "'kernelId' must be 4-64" in refused(rules.check_token, token, "kernelId")


def test_environ() -> None:
    assert rules.check_environ(None, LIMITS) == {}
    good = {"PATH_X": "a=b", "_1": "", "lower": "héllo\nwörld"}
    assert rules.check_environ(good, LIMITS) == good
    for bad in ({"": "x"}, {"A=B": "x"}, {"1A": "x"}, {"A B": "x"}, {"A\x00": "x"},
                {"A": "x\x00"}, {"A": 1}, {"A": None}, {"A": "\ud800"}, ["A=B"], "A=B"):
        assert "config.environ" in refused(rules.check_environ, bad, LIMITS)
    many = {f"V{i}": "" for i in range(LIMITS.max_environ_entries + 1)}
    assert "limits.max_environ_entries" in refused(rules.check_environ, many, LIMITS)
    value = "x" * (LIMITS.max_environ_value_bytes + 1)
    assert "limits.max_environ_value_bytes" in refused(rules.check_environ, {"A": value}, LIMITS)
    half = "x" * LIMITS.max_environ_value_bytes
    assert "limits.max_environ_bytes" in refused(
        rules.check_environ, {"A": half, "B": half, "C": half}, LIMITS
    )
    assert "limits.max_environ_name_bytes" in refused(
        rules.check_environ, {"A" * (LIMITS.max_environ_name_bytes + 1): ""}, LIMITS
    )


@given(st.dictionaries(any_text, any_text | st.integers() | st.none(), max_size=5))
def test_environ_that_passes_is_safe_for_execve(environ: dict[str, Any]) -> None:
    try:
        checked = rules.check_environ(environ, LIMITS)
    except errors.InvalidAPIParameters:
        return
    for name, value in checked.items():
        assert name and "=" not in name and "\x00" not in name and name.isascii()
        assert isinstance(value, str) and "\x00" not in value
        value.encode("utf-8")


def test_code_run_id_lang_tag() -> None:
    bad: object  # each loop feeds values of other types
    assert rules.check_code(None, LIMITS) == ""
    assert rules.check_code("a\x00b", LIMITS) == "a\x00b"  # the program's own data
    assert "limits.max_code_bytes" in refused(rules.check_code, "x" * (256 * 1024 + 1), LIMITS)
    refused(rules.check_code, "\ud800", LIMITS)
    refused(rules.check_code, ["print(1)"], LIMITS)
    assert rules.check_run_id(None) is None and rules.check_run_id("ab:c-1.2_3") == "ab:c-1.2_3"
    for bad in ("a b", "x" * 65, "a\x00", 5):
        refused(rules.check_run_id, bad)
    assert rules.check_lang("lablup/python:3.6-ubuntu") == "lablup/python:3.6-ubuntu"
    for bad in ("", "py\x00", "py\nthon", "x" * 257, 3):
        refused(rules.check_lang, bad)
    assert rules.check_tag(None) is None and rules.check_tag("é" * 64) == "é" * 64
    for bad in ("x" * 65, "t\x00", {}):
        refused(rules.check_tag, bad)


def test_options() -> None:
    bad: object  # each loop feeds values of other types
    assert rules.batch_options(None, LIMITS) == {}
    assert rules.batch_options(
        {"clean": None, "build": "*", "exec": "./main", "buildLog": True, "other": [1]}, LIMITS
    ) == {"clean": None, "build": "*", "exec": "./main"}
    for bad in ({"build": "make\x00"}, {"exec": 5}, {"build": "x" * 8193}, [], "*",
                {f"k{i}": 1 for i in range(17)}):
        refused(rules.batch_options, bad, LIMITS)
    completion = {"row": 1, "col": 2, "line": "pri", "post": "", "x": 1}
    assert rules.complete_options(completion, LIMITS) == {
        "row": 1, "col": 2, "line": "pri", "post": ""
    }
    for bad in ({"row": -1}, {"row": 2**31}, {"col": True}, {"col": 1.5}, {"line": 3},
                {"line": "\x00"}):
        refused(rules.complete_options, bad, LIMITS)


# -- folders ---------------------------------------------------------------------------------


def test_folder_refs_and_mounts() -> None:
    bad: object  # each loop feeds values of other types
    assert check_folder_ref("create") == "create"  # reserved for new folders, not lookups
    for bad in ("x\x00", "abc\n", "a" * 65, "", "-x", None):
        refused(check_folder_ref, bad)
    assert parse_mounts(None) == []
    assert parse_mounts(["a", "b:c"]) == [("a", "a"), ("b", "c")]
    for bad in (["a", "b:a"], ["a\n"], ["a:b\n"], ["x\x00"], [f"f{i}" for i in range(6)], "a"):
        refused(parse_mounts, bad)


def test_user_ids() -> None:
    assert check_user_ids(["a@x", "b@x", "a@x"], 64) == ["a@x", "b@x"]
    assert "limits.max_invitees" in refused(check_user_ids, ["u"] * 65, 64)
    for bad in ([""], ["a\x00"], ["x" * 257], [None], [], "a@x"):
        refused(check_user_ids, bad, 64)


@pytest.mark.parametrize(
    "disposition",
    [
        "form-data; name=src; filename*=unicode_escape''%5Cx00",
        "form-data; name=src; filename*=unicode_escape''%5Cud800",
        "form-data; name=src; filename*=utf-16''%00%D8",
        "form-data; name=src; filename*=utf-8''%ED%A0%80",
    ],
)
def test_extended_filenames_only_in_rfc_5987_charsets(disposition: str) -> None:
    refused(part_filename, disposition)


def test_latin1_extended_filenames_are_read() -> None:
    assert part_filename("form-data; name=src; filename*=ISO-8859-1''caf%E9") == "café"
