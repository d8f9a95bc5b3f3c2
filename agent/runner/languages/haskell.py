"""Haskell: GHC; a query snippet runs with runghc, bare lines become main's do block."""

from __future__ import annotations

import os
import re

from .schema import SLOW_START, Language, Recipe, words

KEYWORDS = words(
    "case class data default deriving do else foreign if import in infix "
    "infixl infixr instance let module newtype of then type where putStrLn "
    "print show read return map filter foldr foldl length mapM_ Maybe Just "
    "Nothing Either Left Right"
)


def _haskell_build(workdir: str) -> str | None:
    for name in ("Main.hs", "main.hs"):
        if os.path.exists(os.path.join(workdir, name)):
            return f"ghc -O -o main {name}"
    return None


def _wrap_haskell(code: str) -> str:
    # A module with a main is a program; bare lines become a do block in main.
    if re.search(r"^main\s*(::|=)", code, re.MULTILINE):
        return code
    lines = [line for line in code.splitlines() if line.strip()] or ["return ()"]
    return "main :: IO ()\nmain = do\n" + "".join(f"  {line}\n" for line in lines)


HASKELL = Language(
    Recipe(
        name="haskell",
        query="compile-and-run",
        build=_haskell_build,
        exec="./main",
        snippet_file="main.hs",
        wrap=_wrap_haskell,
        query_exec="runghc {src}",
        keywords=KEYWORDS,
    ),
    toolchain="ghc",
    packages=("ghc",),
    aliases=("ghc",),
    # GHC compiles slowly; runghc of a snippet takes a few seconds.
    limits=SLOW_START,
    version_command=("sh", "-c", "ghc --numeric-version | cut -d. -f1,2"),
)
