"""Language recipes: what a runner does for one language.

A recipe names its query handler and its batch defaults, so adding a language is a
few lines here (see `RECIPES`). Query handlers:

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
    #: Turns a snippet into a whole program (e.g. Java statements into a class).
    wrap: Callable[[str], str] | None = None
    #: Completion candidates for languages without a live interpreter to ask: keywords
    #: and common built-ins, offered when they extend the word before the cursor.
    keywords: tuple[str, ...] = ()

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


def _run_main(command: str, *candidates: str, pattern: str = "") -> Callable[[str], str | None]:
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


# Backend.AI's Python kernels run main.py; a lone script is an obvious second guess.
_python_exec = _run_main("python3", "main.py", pattern="*.py")


def _java_exec(workdir: str) -> str | None:
    # The class the default build compiled from Main.java, else from the only source.
    if os.path.exists(os.path.join(workdir, "Main.java")):
        return "java -cp . Main"
    sources = sorted(glob.glob(os.path.join(workdir, "*.java")))
    if len(sources) == 1:
        return "java -cp . " + shlex.quote(os.path.basename(sources[0])[: -len(".java")])
    return None


def _haskell_build(workdir: str) -> str | None:
    for name in ("Main.hs", "main.hs"):
        if os.path.exists(os.path.join(workdir, name)):
            return f"ghc -O -o main {name}"
    return None


def _wrap_java(code: str) -> str:
    # Statements run as the body of main(); a snippet that declares a class is a program.
    if re.search(r"\b(class|interface|enum|record)\s+\w+", code):
        return code
    return (
        "import java.util.*;\nimport java.io.*;\n"
        "public class Main {\n    public static void main(String[] args) throws Exception {\n"
        + code
        + "\n    }\n}\n"
    )


def _wrap_php(code: str) -> str:
    return code if code.lstrip().startswith("<?") else "<?php\n" + code


def _wrap_octave(code: str) -> str:
    # A file that starts with a function definition would be a function file that runs
    # nothing; a leading statement makes it a script, functions and all.
    return "1;\n" + code


def _wrap_haskell(code: str) -> str:
    # A module with a main is a program; bare lines become a do block in main.
    if re.search(r"^main\s*(::|=)", code, re.MULTILINE):
        return code
    lines = [line for line in code.splitlines() if line.strip()] or ["return ()"]
    return "main :: IO ()\nmain = do\n" + "".join(f"  {line}\n" for line in lines)


def _words(text: str) -> tuple[str, ...]:
    return tuple(sorted(set(text.split())))


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(name="python", query="python-repl", exec=_python_exec),
        # The machine-learning images: the same Python kernel, more packages.
        Recipe(name="python-ml", query="python-repl", exec=_python_exec),
        Recipe(name="python-dl", query="python-repl", exec=_python_exec),
        Recipe(
            name="python2",
            query="compile-and-run",
            exec=_run_main("python2", "main.py", pattern="*.py"),
            snippet_file="main.py",
            query_exec="python2 {src}",
            keywords=_words(
                "and as assert break class continue def del elif else except exec finally "
                "for from global if import in is lambda not or pass print raise return try "
                "while with yield True False None len range xrange raw_input input open "
                "unicode str int float dict list set tuple sorted enumerate zip"
            ),
        ),
        Recipe(
            name="c",
            query="compile-and-run",
            build=f"gcc -O2 -o ./main *.c {C_LIBS}",
            exec="./main",
            snippet_file="main.c",
            query_build=f"cd {{dir}} && gcc -O2 -o main main.c {C_LIBS}",
            keywords=_words(
                "auto break case char const continue default do double else enum extern "
                "float for goto if inline int long register return short signed sizeof "
                "static struct switch typedef union unsigned void volatile while printf "
                "fprintf scanf malloc free memcpy memset strlen strcmp strcpy puts"
            ),
        ),
        Recipe(
            name="cpp",
            query="compile-and-run",
            build=f"g++ -O2 -o ./main *.cpp {C_LIBS}",
            exec="./main",
            snippet_file="main.cpp",
            query_build=f"cd {{dir}} && g++ -O2 -o main main.cpp {C_LIBS}",
            keywords=_words(
                "auto bool break case catch char class const constexpr continue default "
                "delete do double else enum explicit extern false float for friend if "
                "inline int long namespace new nullptr operator private protected public "
                "return short signed sizeof static struct switch template this throw true "
                "try typedef typename union unsigned using virtual void while std cout cin "
                "endl vector string map unordered_map"
            ),
        ),
        Recipe(
            name="java",
            query="compile-and-run",
            build="find . -name '*.java' -exec javac -d . {} +",
            exec=_java_exec,
            snippet_file="Main.java",
            wrap=_wrap_java,
            # The source-file launcher compiles and runs in one JVM (JEP 330).
            query_exec="java {src}",
            keywords=_words(
                "abstract boolean break byte case catch char class continue default do "
                "double else enum extends final finally float for if implements import "
                "instanceof int interface long new package private protected public return "
                "short static super switch this throw throws try void while String System "
                "println ArrayList HashMap List Map"
            ),
        ),
        Recipe(
            name="nodejs",
            query="node-repl",
            exec=_run_main("node", "main.js", "index.js", pattern="*.js"),
        ),
        Recipe(
            name="lua",
            query="compile-and-run",
            exec=_run_main("lua5.4", "main.lua", pattern="*.lua"),
            snippet_file="main.lua",
            query_exec="lua5.4 {src}",
            keywords=_words(
                "and break do else elseif end false for function goto if in local nil not "
                "or repeat return then true until while print pairs ipairs tostring "
                "tonumber string table math io os require"
            ),
        ),
        Recipe(
            name="php",
            query="compile-and-run",
            exec=_run_main("php", "main.php", "index.php", pattern="*.php"),
            snippet_file="main.php",
            wrap=_wrap_php,
            query_exec="php {src}",
            keywords=_words(
                "abstract array as break case catch class const continue declare default do "
                "echo else elseif empty endfor endforeach endif endwhile extends final "
                "finally fn for foreach function global if implements include interface "
                "isset list match namespace new print private protected public require "
                "return static switch throw trait try unset use var while yield count "
                "strlen implode explode printf sprintf"
            ),
        ),
        Recipe(
            name="r",
            query="compile-and-run",
            exec=_run_main("Rscript", "main.R", "main.r", pattern="*.R"),
            snippet_file="main.R",
            query_exec="Rscript {src}",
            keywords=_words(
                "if else repeat while function for in next break TRUE FALSE NULL Inf NaN "
                "NA library print cat paste paste0 c list data.frame matrix vector length "
                "sum mean median sapply lapply apply seq rep"
            ),
        ),
        Recipe(
            name="octave",
            query="compile-and-run",
            exec=_run_main("octave-cli --norc --quiet", "main.m", pattern="*.m"),
            snippet_file="main.m",
            wrap=_wrap_octave,
            query_exec="octave-cli --norc --quiet {src}",
            keywords=_words(
                "break case catch continue do else elseif end endfor endfunction endif "
                "endwhile for function global if otherwise persistent return switch try "
                "until unwind_protect while disp printf fprintf zeros ones eye size "
                "length numel sum mean plot"
            ),
        ),
        Recipe(
            name="haskell",
            query="compile-and-run",
            build=_haskell_build,
            exec="./main",
            snippet_file="main.hs",
            wrap=_wrap_haskell,
            query_exec="runghc {src}",
            keywords=_words(
                "case class data default deriving do else foreign if import in infix "
                "infixl infixr instance let module newtype of then type where putStrLn "
                "print show read return map filter foldr foldl length mapM_ Maybe Just "
                "Nothing Either Left Right"
            ),
        ),
        Recipe(
            name="julia",
            query="compile-and-run",
            exec=_run_main("julia --startup-file=no", "main.jl", pattern="*.jl"),
            snippet_file="main.jl",
            query_exec="julia --startup-file=no {src}",
            keywords=_words(
                "abstract baremodule begin break catch const continue do else elseif end "
                "export false finally for function global if import let local macro "
                "module mutable quote return struct true try using while println print "
                "length push! map filter collect"
            ),
        ),
    )
}


ALIASES = {
    "python3": "python",
    "python-tensorflow": "python-ml",
    "python-pytorch": "python-ml",
    "python-caffe": "python-dl",
    "python-mxnet": "python-dl",
    "c++": "cpp",
    "cxx": "cpp",
    "node": "nodejs",
    "javascript": "nodejs",
    "R": "r",
}


def get_recipe(lang: str) -> Recipe:
    """The recipe for `lang` (``python:3.11`` → ``python``); unknown ones get batch only."""
    name = lang.split(":", 1)[0].strip()
    name = ALIASES.get(name) or ALIASES.get(name.lower()) or name.lower()
    return RECIPES.get(name) or Recipe(name=name)
