"""The languages: one definition each, from which the runner's recipe and the image are made.

A `Language` (see `schema`) is a runner `Recipe` (what query and batch runs do) and what
its image holds (what ``crucible images build`` installs, the image's limits and ``lang``
aliases). The runner looks its recipe up here by the image's ``crucible.lang``
(`get_recipe`); ``crucible.agent.images.recipes`` makes the image recipes from the same
definitions. To add a language, add a module and list its definition in `LANGUAGES`.

Why here, in the runner's package: the runner is bind-mounted alone into every kernel
and imports nothing but its own modules and the standard library, so the one definition
must live where it can read it. The image builder, on the host, imports it from here.
"""

from __future__ import annotations

from .c import CPP, C
from .haskell import HASKELL
from .java import JAVA
from .julia import JULIA
from .lua import LUA
from .nodejs import NODEJS
from .octave import OCTAVE
from .php import PHP
from .python import PYTHON, PYTHON2, PYTHON_DL, PYTHON_ML
from .r import R
from .schema import Language, Recipe

__all__ = ["LANGUAGES", "Language", "Recipe", "get_recipe"]

#: Every language, in the order ``crucible images build all`` builds them.
LANGUAGES: tuple[Language, ...] = (
    PYTHON, C, CPP, NODEJS, LUA, JAVA, PHP, R, OCTAVE, HASKELL,
    PYTHON_ML, PYTHON_DL, PYTHON2, JULIA,
)  # fmt: skip

_BY_NAME = {language.name: language for language in LANGUAGES}
#: Untagged ``lang`` aliases of the images → the language's name.
_ALIASES = {
    alias: language.name
    for language in LANGUAGES
    for alias in (*language.also_named, *language.aliases)
}


def get_recipe(lang: str) -> Recipe:
    """The recipe for `lang` (``python:3.11`` → ``python``); unknown ones get batch only."""
    name = lang.split(":", 1)[0].strip()
    name = _ALIASES.get(name) or _ALIASES.get(name.lower()) or name.lower()
    language = _BY_NAME.get(name)
    return language.recipe if language is not None else Recipe(name=name)
