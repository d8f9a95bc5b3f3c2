"""Java: OpenJDK; query snippets run with the source-file launcher, statements in main()."""

from __future__ import annotations

import glob
import os
import re
import shlex

from .schema import SLOW_START, Language, Recipe, words

KEYWORDS = words(
    "abstract boolean break byte case catch char class continue default do "
    "double else enum extends final finally float for if implements import "
    "instanceof int interface long new package private protected public return "
    "short static super switch this throw throws try void while String System "
    "println ArrayList HashMap List Map"
)


def _java_exec(workdir: str) -> str | None:
    # The class the default build compiled from Main.java, else from the only source.
    if os.path.exists(os.path.join(workdir, "Main.java")):
        return "java -cp . Main"
    sources = sorted(glob.glob(os.path.join(workdir, "*.java")))
    if len(sources) == 1:
        return "java -cp . " + shlex.quote(os.path.basename(sources[0])[: -len(".java")])
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


JAVA = Language(
    Recipe(
        name="java",
        query="compile-and-run",
        build="find . -name '*.java' -exec javac -d . {} +",
        exec=_java_exec,
        snippet_file="Main.java",
        wrap=_wrap_java,
        # The source-file launcher compiles and runs in one JVM (JEP 330).
        query_exec="java {src}",
        keywords=KEYWORDS,
    ),
    packages=("openjdk-{version}-jdk-headless",),
    # The JDK's postinst links its man pages, whose folder the base image's dpkg
    # configuration keeps empty.
    setup=("mkdir -p /usr/share/man/man1",),
    aliases=("openjdk",),
    # The JVM and javac start slowly; a cold compile-and-run takes seconds.
    limits=SLOW_START,
    # The JVM sizes its GC and JIT thread pools from the host's cores.
    corecount="JAVA_CPU_COUNT",
    version_command=(
        "sh",
        "-c",
        "java -version 2>&1 | sed -n '1s/^[^\"]*\"\\([0-9]*\\).*/\\1/p'",
    ),
)
