"""What a language definition holds: a runner `Recipe` and its image (see `Language`).

Standard library only, Python 3.9 (the runner imports it inside the images); the image
builder (``crucible.agent.images``) imports it on the host.

A recipe names its query handler and its batch defaults. Query handlers:

* ``python-repl``: a persistent Python interpreter in a child process (globals kept).
* ``node-repl``: the same with Node.js (nodechild.js): one global context, so top-level
  declarations persist between runs; a snippet's promise is awaited.
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
import re
import shlex
from collections.abc import Callable
from typing import NamedTuple, Optional, Union

# `Optional`/`Union` rather than `X | None`: this alias is evaluated at runtime, and
# images run Python 3.9.
Default = Union[str, None, Callable[[str], Optional[str]]]

#: Thread-count variables of OpenBLAS/OpenMP, set to the session's cores (spec 9).
BLAS_THREADS = "OPENBLAS_NUM_THREADS,OMP_NUM_THREADS"


class Service(NamedTuple):
    """An app the kernel offers (spec 9 ``ai.backend.service-ports``): `name`, `protocol`
    (``http``, ``tcp`` or ``pty``) and `port` go into the image's label; `command` is what
    the runner's ``start_service`` runs (as the kernel user, in the working directory,
    stdin on /dev/null) and must listen on ``127.0.0.1:port``; ``{port}`` and
    ``{workdir}`` in its words are replaced. `env` is added to the kernel's environment;
    ``{state}`` in its values is a private directory under /tmp for the service's own
    files (runtime, config), so they do not land among the user's files."""

    name: str
    protocol: str
    port: int
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()

    def argv(self, workdir: str) -> list[str]:
        return [word.format(port=self.port, workdir=workdir) for word in self.command]


class Recipe(NamedTuple):
    """How the runner runs one language; see the module docstring."""

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
    #: Turns a snippet into a whole program (e.g. Java statements into a class).
    wrap: Callable[[str], str] | None = None
    #: Completion candidates for languages without a live interpreter to ask: keywords
    #: and common built-ins, offered when they extend the word before the cursor.
    keywords: tuple[str, ...] = ()
    #: The apps the kernel offers (its image's ``ai.backend.service-ports``).
    services: tuple[Service, ...] = ()

    def service(self, name: str) -> Service | None:
        return next((service for service in self.services if service.name == name), None)

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

    def snippet(self, code: str) -> str:
        """The file content a query snippet becomes."""
        return self.wrap(code) if self.wrap is not None else code

    def complete(self, code: str) -> list[str]:
        """Keywords that extend the identifier just before the cursor."""
        match = re.search(r"[A-Za-z_][A-Za-z0-9_]*$", code)
        if match is None:
            return []
        prefix = match.group(0)
        return [word for word in self.keywords if word.startswith(prefix) and word != prefix]


class Limits(NamedTuple):
    """The spec 9 limits of an image: ``ai.backend.maxcores``, ``ai.backend.maxmem``, and
    ``ai.backend.timeout`` (seconds per execution; agents may enforce less)."""

    cores: int
    memory: str
    timeout: int


#: Limits of runtimes that start slowly or compile on first use (a JVM, GHC, Julia, R,
#: Octave): seconds of start-up before a snippet even runs, and room for it.
SLOW_START = Limits(cores=4, memory="2g", timeout=60)


class Language(NamedTuple):
    """One language, defined once: how the runner runs it (`recipe`) and, in the other
    fields, what its kernel image holds (``crucible.agent.images`` builds it).

    `name` is the recipe's and the image's (``crucible.lang``). The image is
    ``crucible/kernel-<name>:<version>``, the version being that of the tool chain in the
    Debian suite's version table (checked in the built image with `version_command`).
    Packages come from apt, never pip, except `pip_packages` for what Debian lacks.
    """

    recipe: Recipe
    #: Debian packages; ``{version}`` stands for the tool chain's version.
    packages: tuple[str, ...]
    limits: Limits
    #: The key of the suite's version table whose version tags the image; ``""``: `name`.
    toolchain: str = ""
    #: A command run in the built image whose output must equal the version.
    version_command: tuple[str, ...] = ()
    #: Other ``lang`` names of the image, each also with ``:latest``, ``:MAJOR`` and
    #: ``:VERSION`` (as `name` is).
    also_named: tuple[str, ...] = ()
    #: Plain ``lang`` aliases, without tags.
    aliases: tuple[str, ...] = ()
    #: spec 9 ``ai.backend.envs.corecount``: variables set to the session's cores (the
    #: thread pools that would otherwise size themselves by the host's).
    corecount: str = ""
    #: Extra environment variables of the image, as (name, value) pairs.
    env: tuple[tuple[str, str], ...] = ()
    #: Shell commands run before apt-get, in the same layer.
    setup: tuple[str, ...] = ()
    #: Pinned ``name==version`` requirements installed with pip after apt.
    pip_packages: tuple[str, ...] = ()
    #: The Debian suite the image always comes from; ``None``: the configured one.
    suite: str | None = None
    #: The configured suites that have this image at all; empty: every suite whose
    #: version table has the tool chain.
    only_suites: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.recipe.name


# -- helpers for definitions --------------------------------------------------------------


def run_main(command: str, *candidates: str, pattern: str = "") -> Callable[[str], str | None]:
    """A default ``exec`` that runs the first of `candidates` present in the working
    directory with `command`, else the only file matching `pattern` (if exactly one)."""

    def pick(workdir: str) -> str | None:
        for name in candidates:
            if os.path.exists(os.path.join(workdir, name)):
                return f"{command} {shlex.quote(name)}"
        if pattern:
            found = sorted(glob.glob(os.path.join(workdir, pattern)))
            if len(found) == 1:
                return f"{command} {shlex.quote(os.path.basename(found[0]))}"
        return None

    return pick


def script(
    name: str,
    interpreter: str,
    extension: str,
    *also_run: str,
    wrap: Callable[[str], str] | None = None,
    keywords: tuple[str, ...] = (),
) -> Recipe:
    """A scripting language: batch ``exec`` runs ``main.EXT`` (or one of `also_run`, or
    the only ``*.EXT``) with `interpreter`, and a query snippet is such a program, run
    the same way from a scratch file (no state is kept between runs)."""
    main = f"main.{extension}"
    return Recipe(
        name=name,
        query="compile-and-run",
        exec=run_main(interpreter, main, *also_run, pattern=f"*.{extension}"),
        snippet_file=main,
        wrap=wrap,
        query_exec=f"{interpreter} {{src}}",
        keywords=keywords,
    )


def words(text: str) -> tuple[str, ...]:
    """Completion keywords from a whitespace-separated list."""
    return tuple(sorted(set(text.split())))
