"""Julia: each query snippet runs as a script (Julia compiles on first use: seconds)."""

from __future__ import annotations

from .schema import SLOW_START, Language, script, words

KEYWORDS = words(
    "abstract baremodule begin break catch const continue do else elseif end "
    "export false finally for function global if import let local macro "
    "module mutable quote return struct true try using while println print "
    "length push! map filter collect"
)

# Debian 12 dropped Julia: its image comes from bullseye whatever the configured suite.
JULIA = Language(
    script("julia", "julia --startup-file=no", "jl", keywords=KEYWORDS),
    suite="bullseye",
    packages=("julia",),
    # Julia compiles on first use: even a small snippet takes a few seconds.
    limits=SLOW_START,
    corecount="JULIA_NUM_THREADS,OPENBLAS_NUM_THREADS",
    version_command=(
        "julia",
        "--startup-file=no",
        "-e",
        'print(VERSION.major, ".", VERSION.minor)',
    ),
)
