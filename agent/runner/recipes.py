"""Language recipes: what a runner does for one language.

A recipe names its query handler and its batch defaults, so adding a language is a
few lines here (see `RECIPES`). Query handlers:

* ``python-repl``: a persistent Python interpreter in a child process (globals kept).
* ``compile-and-run``: write the snippet to a scratch file, build it with
  `Recipe.query_build` (skipped when ``None``) and run `Recipe.query_exec`; no state is
  kept between runs, and the run's exit code is the last process's.
* ``none``: query mode is not offered (batch only).

Batch defaults are what ``"*"`` means for the ``clean``/``build``/``exec`` options: a
shell command, ``None`` (nothing to do), or a function of the working directory that
returns one of those (e.g. Python's exec depends on which files were uploaded).
"""

from __future__ import annotations

import glob
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional, Union

# `Optional`/`Union` rather than `X | None`: this alias is evaluated at runtime, and
# images run Python 3.9.
Default = Union[str, None, Callable[[str], Optional[str]]]

C_LIBS = "-pthread -lm -lrt -ldl"


@dataclass(frozen=True)
class Recipe:
    """How one language runs; see the module docstring."""

    name: str
    query: str = "none"
    clean: Default = None
    build: Default = None
    exec: Default = None
    #: Scratch file name for a compile-and-run snippet.
    snippet_file: str = "snippet"
    #: Shell templates for compile-and-run; ``{src}``, ``{out}`` and ``{dir}`` are
    #: replaced by shell-quoted paths in the scratch directory.
    query_build: str | None = None
    query_exec: str = "{out}"

    def batch_command(self, step: str, option: object, workdir: str) -> str | None:
        """The shell command for batch `step` given the client's option value.

        ``None``/``""`` skip the step; ``"*"`` picks this recipe's default.
        """
        if option is None or option == "":
            return None
        if not isinstance(option, str):
            raise TypeError(f"batch option {step!r} must be a string or null")
        if option != "*":
            return option
        default: Default = getattr(self, step)
        if callable(default):
            return default(workdir)
        return default

    def query_commands(self, scratch: str) -> tuple[str | None, str]:
        """(build, exec) shell commands for a snippet written to `scratch`."""
        names = {
            "src": shlex.quote(os.path.join(scratch, self.snippet_file)),
            "out": shlex.quote(os.path.join(scratch, "main")),
            "dir": shlex.quote(scratch),
        }
        build = self.query_build.format(**names) if self.query_build else None
        return build, self.query_exec.format(**names)


def _python_exec(workdir: str) -> str | None:
    # Backend.AI's Python kernels run main.py; a lone script is an obvious second guess.
    if os.path.exists(os.path.join(workdir, "main.py")):
        return "python3 main.py"
    scripts = sorted(glob.glob(os.path.join(workdir, "*.py")))
    if len(scripts) == 1:
        return "python3 " + shlex.quote(os.path.basename(scripts[0]))
    return None


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(name="python", query="python-repl", exec=_python_exec),
        Recipe(
            name="c",
            query="compile-and-run",
            build=f"gcc -O2 -o ./main *.c {C_LIBS}",
            exec="./main",
            snippet_file="main.c",
            query_build=f"cd {{dir}} && gcc -O2 -o main main.c {C_LIBS}",
        ),
        Recipe(
            name="cpp",
            query="compile-and-run",
            build=f"g++ -O2 -o ./main *.cpp {C_LIBS}",
            exec="./main",
            snippet_file="main.cpp",
            query_build=f"cd {{dir}} && g++ -O2 -o main main.cpp {C_LIBS}",
        ),
    )
}


ALIASES = {"python3": "python", "c++": "cpp", "cxx": "cpp"}


def get_recipe(lang: str) -> Recipe:
    """The recipe for `lang` (``python:3.11`` → ``python``); unknown ones get batch only."""
    name = lang.split(":", 1)[0].strip().lower()
    name = ALIASES.get(name, name)
    return RECIPES.get(name) or Recipe(name=name)
