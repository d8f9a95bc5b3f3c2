"""GNU Octave: each query snippet runs as a script file with octave-cli."""

from __future__ import annotations

from .schema import BLAS_THREADS, SLOW_START, Language, script, words

KEYWORDS = words(
    "break case catch continue do else elseif end endfor endfunction endif "
    "endwhile for function global if otherwise persistent return switch try "
    "until unwind_protect while disp printf fprintf zeros ones eye size "
    "length numel sum mean plot"
)


def _wrap_octave(code: str) -> str:
    # A file that starts with a function definition would be a function file that runs
    # nothing; a leading statement makes it a script, functions and all.
    return "1;\n" + code


OCTAVE = Language(
    script("octave", "octave-cli --norc --quiet", "m", wrap=_wrap_octave, keywords=KEYWORDS),
    packages=("octave",),
    aliases=("matlab",),
    limits=SLOW_START,
    corecount=BLAS_THREADS,
    version_command=(
        "octave-cli",
        "--norc",
        "--quiet",
        "--eval",
        "v = strsplit(OCTAVE_VERSION, '.'); printf('%s\\n', v{1})",
    ),
)
