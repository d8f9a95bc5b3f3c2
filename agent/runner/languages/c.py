"""C and C++: GCC's compilers; a query snippet is a whole program, compiled and run."""

from __future__ import annotations

from .schema import Language, Limits, Recipe, words

C_LIBS = "-pthread -lm -lrt -ldl"


def _gcc(name: str, compiler: str, extension: str, *aliases: str, keywords: str) -> Language:
    """A language of GCC's: batch builds every ``*.EXT`` into ``./main``; a snippet is
    ``main.EXT``, built the same way in its scratch folder."""
    return Language(
        Recipe(
            name=name,
            query="compile-and-run",
            build=f"{compiler} -O2 -o ./main *.{extension} {C_LIBS}",
            exec="./main",
            snippet_file=f"main.{extension}",
            query_build=f"cd {{dir}} && {compiler} -O2 -o main main.{extension} {C_LIBS}",
            keywords=words(keywords),
        ),
        toolchain="gcc",
        packages=(compiler, "libc6-dev", "make"),
        aliases=aliases,
        limits=Limits(cores=4, memory="1g", timeout=30),
        version_command=(compiler, "-dumpversion"),
    )


C = _gcc(
    "c",
    "gcc",
    "c",
    "gcc",
    keywords="auto break case char const continue default do double else enum extern "
    "float for goto if inline int long register return short signed sizeof "
    "static struct switch typedef union unsigned void volatile while printf "
    "fprintf scanf malloc free memcpy memset strlen strcmp strcpy puts",
)

CPP = _gcc(
    "cpp",
    "g++",
    "cpp",
    "c++",
    "g++",
    keywords="auto bool break case catch char class const constexpr continue default "
    "delete do double else enum explicit extern false float for friend if "
    "inline int long namespace new nullptr operator private protected public "
    "return short signed sizeof static struct switch template this throw true "
    "try typedef typename union unsigned using virtual void while std cout cin "
    "endl vector string map unordered_map",
)
