"""`lang` → image resolution (spec 4.2), on labels alone."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crucible.agent.images.recipes import lang_recipes
from crucible.errors import ImageNotFound
from crucible.kernels.catalog import (
    UnknownLang,
    aliases_of,
    resolve_lang,
    split_ref,
    version_key,
)


def entry(ref: str, lang: str, aliases: str) -> tuple[str, Mapping[str, str]]:
    return ref, {"crucible.lang": lang, "crucible.aliases": aliases}


PY311 = entry(
    "crucible/kernel-python:3.11",
    "python",
    "python,python:latest,python:3,python:3.11,python3",
)
PY313 = entry(
    "crucible/kernel-python:3.13",
    "python",
    "python,python:latest,python:3,python:3.13,python3",
)
C12 = entry("crucible/kernel-c:12", "c", "c,c:latest,c:12,gcc")
CPP12 = entry("crucible/kernel-cpp:12", "cpp", "cpp,cpp:latest,cpp:12,c++,g++")
IMAGES = [PY311, C12, CPP12]


@pytest.mark.parametrize(
    ("lang", "ref"),
    [
        ("python", "crucible/kernel-python:3.11"),
        ("python3", "crucible/kernel-python:3.11"),
        ("python:3", "crucible/kernel-python:3.11"),
        ("python:3.11", "crucible/kernel-python:3.11"),
        ("python:latest", "crucible/kernel-python:3.11"),
        (" python ", "crucible/kernel-python:3.11"),
        ("crucible/kernel-python:3.11", "crucible/kernel-python:3.11"),
        ("crucible/kernel-python", "crucible/kernel-python:3.11"),
        ("c", "crucible/kernel-c:12"),
        ("gcc", "crucible/kernel-c:12"),
        ("c:12", "crucible/kernel-c:12"),
        ("c++", "crucible/kernel-cpp:12"),
        ("cpp", "crucible/kernel-cpp:12"),
        # name:tag through the untagged aliases and the lang label
        ("python3:3.11", "crucible/kernel-python:3.11"),
        ("gcc:12", "crucible/kernel-c:12"),
        ("g++:latest", "crucible/kernel-cpp:12"),
    ],
)
def test_resolves(lang: str, ref: str) -> None:
    assert resolve_lang(lang, IMAGES) == ref


@pytest.mark.parametrize(
    "lang", ["python:3.6", "python:3.1", "ruby", "", "  ", "crucible/kernel-python:3.6", "cpp:1"]
)
def test_unknown_is_image_not_found(lang: str) -> None:
    with pytest.raises(UnknownLang) as info:
        resolve_lang(lang, IMAGES)
    error = info.value
    assert isinstance(error, ImageNotFound)
    assert error.status == 404
    assert error.to_problem()["type"].endswith("/image-not-found")
    assert error.lang == lang
    assert "python3" in error.known
    assert repr(lang) in str(error)


def test_no_images_at_all() -> None:
    with pytest.raises(UnknownLang, match="no images"):
        resolve_lang("python", [])


def test_highest_version_wins_an_ambiguous_alias() -> None:
    images = [PY313, PY311, C12]
    assert resolve_lang("python", images) == "crucible/kernel-python:3.13"
    assert resolve_lang("python:3", images) == "crucible/kernel-python:3.13"
    assert resolve_lang("python:3.11", images) == "crucible/kernel-python:3.11"
    assert resolve_lang("crucible/kernel-python", images) == "crucible/kernel-python:3.13"


def test_exact_ref_beats_an_alias() -> None:
    # An alias that looks like another image's ref must not shadow that image.
    odd = entry("crucible/kernel-odd:1", "odd", "crucible/kernel-python:3.11")
    assert resolve_lang("crucible/kernel-python:3.11", [odd, PY311]) == PY311[0]


def test_unlabelled_images_are_only_found_by_ref() -> None:
    plain: tuple[str, Mapping[str, str]] = ("debian:bookworm", {})
    assert resolve_lang("debian:bookworm", [plain]) == "debian:bookworm"
    with pytest.raises(UnknownLang):
        resolve_lang("debian", [("other:1", {})])


def test_version_key_orders_numerically() -> None:
    tags = ["3.9", "3.11", "3.10", "3", "latest"]
    assert sorted(tags, key=version_key) == ["latest", "3", "3.9", "3.10", "3.11"]


@pytest.mark.parametrize(
    ("ref", "parts"),
    [
        ("python:3.11", ("python", "3.11")),
        ("python", ("python", "latest")),
        ("localhost:5000/kernel-python", ("localhost:5000/kernel-python", "latest")),
        ("localhost:5000/kernel-python:3", ("localhost:5000/kernel-python", "3")),
    ],
)
def test_split_ref(ref: str, parts: tuple[str, str]) -> None:
    assert split_ref(ref) == parts


def test_aliases_accept_commas_and_whitespace() -> None:
    assert aliases_of({"crucible.aliases": "a, b  c,,d"}) == ("a", "b", "c", "d")
    assert aliases_of({}) == ()


def test_every_recipe_alias_resolves_to_its_recipe() -> None:
    recipes = lang_recipes("bookworm")
    images = [(recipe.ref, recipe.labels()) for recipe in recipes.values()]
    for recipe in recipes.values():
        assert resolve_lang(recipe.lang, images) == recipe.ref
        for alias in recipe.aliases:
            assert resolve_lang(alias, images) == recipe.ref


@given(
    versions=st.lists(
        st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=6, unique=True
    ),
    pick=st.integers(0, 5),
)
def test_any_own_alias_finds_an_image_that_carries_it(
    versions: list[tuple[int, int]], pick: int
) -> None:
    images = [
        entry(
            f"crucible/kernel-py:{major}.{minor}",
            "py",
            f"py,py:latest,py:{major},py:{major}.{minor}",
        )
        for major, minor in versions
    ]
    major, minor = versions[pick % len(versions)]
    for alias in ("py", f"py:{major}", f"py:{major}.{minor}"):
        ref = resolve_lang(alias, images)
        labels = dict(images)[ref]
        assert alias in aliases_of(labels)
    # The most specific alias is unique, so it names exactly that image.
    assert resolve_lang(f"py:{major}.{minor}", images) == f"crucible/kernel-py:{major}.{minor}"
    assert resolve_lang("py", images) == max(
        (ref for ref, _ in images), key=lambda ref: version_key(split_ref(ref)[1])
    )
