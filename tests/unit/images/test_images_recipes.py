"""Recipes are data: their labels, Dockerfiles and hashes."""

from __future__ import annotations

import json
import re

import attrs
import pytest

from crucible.agent.images.recipes import BaseRecipe, lang_recipes
from crucible.agent.images.suites import UnsupportedSuite, apt_sources
from crucible.kernels.contract import BASE_ENVIRONMENT
from testlib.images import KERNEL_FEATURES, SPEC9_REQUIRED

BASE = BaseRecipe(suite="bookworm", mirror="http://deb.debian.org/debian")
ALL_LANGS = (
    "python", "c", "cpp", "nodejs", "lua", "java", "php", "r", "octave", "haskell",
    "python-ml", "python2", "julia", "python-dl",
)  # fmt: skip


def test_recipes_of_bookworm() -> None:
    recipes = lang_recipes("bookworm")
    assert set(recipes) == set(ALL_LANGS)
    python = recipes["python"]
    assert python.ref == "crucible/kernel-python:3.11"
    assert recipes["c"].ref == "crucible/kernel-c:12"
    assert recipes["cpp"].ref == "crucible/kernel-cpp:12"
    assert set(python.aliases) >= {"python", "python:3", "python:latest", "python3", "python:3.11"}
    assert {"python3", "python3-numpy", "python3-matplotlib"} <= set(python.packages)


def test_unknown_suite_is_a_clear_error() -> None:
    with pytest.raises(UnsupportedSuite, match="buster"):
        lang_recipes("buster")


@pytest.mark.parametrize("lang", ALL_LANGS)
def test_labels_follow_spec_9(lang: str) -> None:
    recipe = lang_recipes("bookworm")[lang]
    labels = recipe.labels()
    for key in SPEC9_REQUIRED:
        assert labels[key]
    assert int(labels["ai.backend.maxcores"]) > 0
    assert re.fullmatch(r"\d+[kmg]", labels["ai.backend.maxmem"])
    assert int(labels["ai.backend.timeout"]) > 0
    assert labels["ai.backend.mode"] == "query"
    assert set(labels["ai.backend.features"].split()) == KERNEL_FEATURES
    assert labels["crucible.lang"] == lang
    assert labels["crucible.aliases"].split(",") == list(recipe.aliases)
    assert labels["crucible.image-kind"] == "kernel"


@pytest.mark.parametrize("lang", ["python", "c", "cpp"])
def test_dockerfile(lang: str) -> None:
    recipe = lang_recipes("bookworm")[lang]
    text = recipe.dockerfile(BASE.ref)
    assert text.startswith("FROM crucible/base:bookworm\n")
    assert "useradd --uid 1000 --gid 1000 --home-dir /home/work" in text
    assert "WORKDIR /home/work" in text
    assert "USER work" in text
    assert "pip" not in text
    assert "MPLBACKEND" not in text  # the runner chooses it
    assert "CMD" not in text  # the agent starts the bind-mounted runner
    for key, value in BASE_ENVIRONMENT.items():
        assert f"{key}={value}" in text
    for key, value in recipe.labels().items():
        assert f"{key}={json.dumps(value)}" in text
    for package in recipe.packages:
        assert package in text


def test_hash_is_stable_and_tracks_changes() -> None:
    python = lang_recipes("bookworm")["python"]
    base_hash = BASE.recipe_hash()
    assert re.fullmatch(r"[0-9a-f]{16}", base_hash)
    assert (
        BASE.recipe_hash() == BaseRecipe("bookworm", "http://deb.debian.org/debian").recipe_hash()
    )
    first = python.recipe_hash(BASE.ref, base_hash)
    assert python.recipe_hash(BASE.ref, base_hash) == first
    # A new base, a new package, a new limit: each makes a different image.
    assert python.recipe_hash(BASE.ref, "0" * 16) != first
    assert (
        attrs.evolve(python, packages=(*python.packages, "python3-pandas")).recipe_hash(
            BASE.ref, base_hash
        )
        != first
    )
    assert attrs.evolve(python, timeout=5).recipe_hash(BASE.ref, base_hash) != first
    # Include order does not matter, the mirror does.
    reordered = attrs.evolve(BASE, include=tuple(reversed(BASE.include)))
    assert reordered.recipe_hash() == base_hash
    assert attrs.evolve(BASE, mirror="http://ftp.de.debian.org/debian").recipe_hash() != base_hash


def test_base_recipe() -> None:
    assert BASE.ref == "crucible/base:bookworm"
    assert "python3-minimal" in BASE.include  # the runner needs python3 in every image
    assert BASE.labels()["crucible.recipe-hash"] == BASE.recipe_hash()
    assert "crucible.lang" not in BASE.labels()  # not a kernel image


def test_apt_sources() -> None:
    assert apt_sources("bookworm", "http://deb.debian.org/debian/").splitlines() == [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]
    assert apt_sources("sid", "http://m/debian") == "deb http://m/debian sid main\n"


def test_legacy_languages_come_from_bullseye() -> None:
    for suite in ("bookworm", "trixie"):
        recipes = lang_recipes(suite)
        for lang, tag in (("python2", "2.7"), ("julia", "1.5"), ("python-dl", "3.9")):
            assert recipes[lang].suite == "bullseye"
            assert recipes[lang].ref == f"crucible/kernel-{lang}:{tag}"
            assert (
                recipes[lang]
                .dockerfile("crucible/base:bullseye")
                .startswith("FROM crucible/base:bullseye\n")
            )
    # Languages whose versions a suite does not list are left out, not guessed.
    assert "nodejs" not in lang_recipes("trixie")
    assert lang_recipes("bookworm")["python"].suite is None


def test_machine_learning_image() -> None:
    ml = lang_recipes("bookworm")["python-ml"]
    for name in ("python-ml", "python-tensorflow", "python-pytorch", "python-pytorch:3.11"):
        assert name in ml.aliases
    assert {"python3-pandas", "python3-sklearn", "python3-torch"} <= set(ml.packages)
    text = ml.dockerfile(BASE.ref)
    # Only TensorFlow comes from PyPI, pinned, with the host's CA bundle for TLS proxies.
    assert "COPY build-ca.pem /tmp/build-ca.pem" in text
    assert "PIP_CERT=/tmp/build-ca.pem PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip" in text
    assert "tensorflow-cpu==" in text
    assert "TF_CPP_MIN_LOG_LEVEL=2" in text


def test_setup_commands_share_the_apt_layer() -> None:
    java = lang_recipes("bookworm")["java"]
    assert "RUN mkdir -p /usr/share/man/man1 \\\n && apt-get update" in java.dockerfile("b")
    # Recipes without setup keep the Dockerfile (and so the image hash) they had.
    python = lang_recipes("bookworm")["python"]
    assert "RUN apt-get update" in python.dockerfile("b")


#: Every image's ``crucible.recipe-hash`` with Debian's default mirror. A change here
#: rebuilds that image on every machine: make it on purpose, never as a side effect of
#: moving code (the language definitions, the contract constants...).
PINNED_HASHES = {
    "python": "7a2326b9447a787c",
    "c": "c489928c02d002c4",
    "cpp": "b384a7c3dbfa65f1",
    "nodejs": "6b41f6c2945191f7",
    "lua": "aeadf83bae4694aa",
    "java": "587e85717219dc1e",
    "php": "c9fdbfda66a19a45",
    "r": "77d70cad95b7ba62",
    "octave": "0297698cd4c4590d",
    "haskell": "e1554422d4fe9576",
    "python-ml": "e49075d8702ad7d8",
    "python-dl": "f32b8a18f8bd9712",
    "python2": "784bd9e5578f4233",
    "julia": "5ea074464db8b82d",
}


def test_recipe_hashes_are_pinned() -> None:
    assert BASE.recipe_hash() == "d47a89d82f646e83"
    found = {}
    for lang, recipe in lang_recipes("bookworm").items():
        base = attrs.evolve(BASE, suite=recipe.suite or BASE.suite)
        found[lang] = recipe.recipe_hash(base.ref, base.recipe_hash())
    assert found == PINNED_HASHES
    assert list(found) == list(PINNED_HASHES)  # the order of `images build all`
