"""Lua 5.4: each query snippet runs as a script."""

from __future__ import annotations

from .schema import Language, Limits, script, words

KEYWORDS = words(
    "and break do else elseif end false for function goto if in local nil not "
    "or repeat return then true until while print pairs ipairs tostring "
    "tonumber string table math io os require"
)

LUA = Language(
    script("lua", "lua5.4", "lua", keywords=KEYWORDS),
    packages=("lua5.4",),
    limits=Limits(cores=2, memory="512m", timeout=30),
    version_command=("lua5.4", "-e", "print((_VERSION:gsub('Lua ', '')))"),
)
