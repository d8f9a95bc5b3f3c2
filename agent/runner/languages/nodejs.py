"""Node.js: a persistent query kernel (the runner's nodechild.js), one global context."""

from __future__ import annotations

from .schema import Language, Limits, Recipe, run_main

NODEJS = Language(
    Recipe(
        name="nodejs",
        query="node-repl",
        exec=run_main("node", "main.js", "index.js", pattern="*.js"),
    ),
    toolchain="node",
    packages=("nodejs",),
    aliases=("node", "javascript"),
    # Node colours console.log() output on a terminal (the runner's pty); API clients
    # want plain text.
    env=(("NODE_DISABLE_COLORS", "1"),),
    limits=Limits(cores=4, memory="1g", timeout=30),
    version_command=("node", "-p", "process.versions.node.split('.')[0]"),
)
