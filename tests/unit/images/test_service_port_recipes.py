"""Service ports in image recipes (spec 9): the python image declares Jupyter, the ML
image TensorBoard too, each from its language definition; a bad declaration is refused
before anything is built."""

from __future__ import annotations

import pytest

from crucible.agent.images.recipes import lang_recipe, lang_recipes
from crucible.agent.runner.languages import get_recipe
from crucible.agent.runner.languages.python import PYTHON
from crucible.agent.runner.languages.schema import Service
from crucible.kernels.service_ports import (
    LABEL_SERVICE_PORTS,
    ServicePortError,
    image_service_ports,
)


def test_the_python_images_declare_their_apps() -> None:
    recipes = lang_recipes("bookworm")
    assert recipes["python"].labels()[LABEL_SERVICE_PORTS] == "jupyter:http:8080"
    assert recipes["python-ml"].labels()[LABEL_SERVICE_PORTS] == (
        "jupyter:http:8080,tensorboard:http:6006"
    )
    assert "python3-notebook" in recipes["python"].packages
    # Images without apps carry no label at all.
    assert LABEL_SERVICE_PORTS not in recipes["c"].labels()
    # What the label says is what the runner can start (one definition).
    for recipe in recipes.values():
        declared = image_service_ports(recipe.labels())
        runner = get_recipe(recipe.lang)
        assert [(s.name, s.protocol, s.port) for s in runner.services] == [
            (p.name, p.protocol, p.port) for p in declared
        ]


def test_jupyter_is_bound_inside_the_container_without_a_token() -> None:
    jupyter = get_recipe("python").service("jupyter")
    assert jupyter is not None
    argv = jupyter.argv("/home/work")
    assert "--ip=127.0.0.1" in argv and "--port=8080" in argv
    assert "--NotebookApp.token=" in argv and "--notebook-dir=/home/work" in argv


@pytest.mark.parametrize(
    ("services", "why"),
    [
        ((Service("web", "http", 80, ("x",)),), "out of range"),
        ((Service("web", "udp", 8080, ("x",)),), "protocol"),
        ((Service("repl", "tcp", 2001, ("x",)),), "reserved"),
        ((Service("a", "tcp", 9000, ("x",)), Service("a", "http", 9001, ("x",))), "twice"),
    ],
)
def test_a_bad_declaration_is_refused_at_build_time(
    services: tuple[Service, ...], why: str
) -> None:
    language = PYTHON._replace(recipe=PYTHON.recipe._replace(services=services))
    with pytest.raises(ServicePortError, match=why):
        lang_recipe(language, "bookworm")
