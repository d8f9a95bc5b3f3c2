"""One definition per language: the image recipe and the runner recipe agree by construction."""

from __future__ import annotations

from pathlib import Path

import pytest

from crucible.agent.images.recipes import lang_recipes
from crucible.agent.runner.languages import LANGUAGES, get_recipe
from crucible.kernels.catalog import aliases_of

RECIPES = lang_recipes("bookworm")


def test_every_language_has_an_image_and_a_runner_recipe() -> None:
    assert list(RECIPES) == [language.name for language in LANGUAGES]
    for language in LANGUAGES:
        assert get_recipe(language.name) is language.recipe
        assert language.recipe.query != "none"


@pytest.mark.parametrize("lang", sorted(RECIPES))
def test_the_runner_answers_to_every_name_of_the_image(lang: str) -> None:
    # The agent starts the runner with the image's crucible.lang; any other name the
    # image answers to must mean the same recipe to the runner.
    labels = RECIPES[lang].labels()
    assert get_recipe(labels["crucible.lang"]).name == lang
    for alias in aliases_of(labels):
        assert get_recipe(alias).name == lang, alias


def test_an_unknown_language_is_batch_only() -> None:
    recipe = get_recipe("COBOL:85")
    assert (recipe.name, recipe.query) == ("cobol", "none")
    assert recipe.batch_command("exec", "*", "/nonexistent") is None
    assert recipe.batch_command("exec", "./run", "/nonexistent") == "./run"


def test_scripting_languages_run_their_main_file(tmp_path: Path) -> None:
    lua = get_recipe("lua")
    assert lua.query_commands("/s") == (None, "lua5.4 /s/main.lua")
    assert lua.batch_command("exec", "*", str(tmp_path)) is None
    php = get_recipe("php")
    assert php.snippet("echo 1;") == "<?php\necho 1;"
    assert php.snippet("<?php echo 1;") == "<?php echo 1;"
