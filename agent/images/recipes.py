"""Kernel image recipes, as data.

A recipe is everything that decides what an image contains. Its hash is stored in the
image's ``crucible.recipe-hash`` label, so the builder can tell an up-to-date image from a
stale one by looking at labels alone (no build needed to find out).

This module is pure: no Docker, no I/O. The builder (`crucible.agent.images.builder`)
turns recipes into images.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import attrs

#: Label names written on every Crucible image (see docs/internals.md, "Kernel images").
LABEL_LANG = "crucible.lang"
LABEL_ALIASES = "crucible.aliases"
LABEL_RECIPE_HASH = "crucible.recipe-hash"
LABEL_BASE_HASH = "crucible.base-hash"
#: ``base`` or ``kernel``: lets `crucible images list --all` show the base image too.
LABEL_KIND = "crucible.image-kind"
LABEL_SUITE = "crucible.debian-suite"

#: Bump when the builder's *handling* of a recipe changes in a way that alters the image
#: (e.g. how the rootfs is trimmed), so that existing images are seen as stale.
BUILDER_REVISION = 1

BASE_REPOSITORY = "crucible/base"
KERNEL_REPOSITORY_PREFIX = "crucible/kernel-"

#: The spec 9 base environment every kernel image carries.
BASE_ENVIRONMENT: Mapping[str, str] = {
    "TERM": "xterm",
    "LANG": "C.UTF-8",
    "SHELL": "/bin/bash",
    "USER": "work",
    "HOME": "/home/work",
}

#: The CA bundle file the builder adds to the build context of recipes with pip packages.
PIP_CA_FILE = "build-ca.pem"

WORK_USER = "work"
WORK_UID = 1000
WORK_HOME = "/home/work"

#: Runtime features of every Crucible kernel: the runner implements them for all languages.
DEFAULT_FEATURES = ("batch", "query", "uid-match", "user-input")

#: Versions of the tool chains each supported Debian suite ships. Image tags and aliases
#: such as ``python:3.11`` come from here; the builder checks them against the built image
#: (`LangRecipe.version_command`), so a wrong entry fails the build instead of lying.
SUITE_VERSIONS: Mapping[str, Mapping[str, str]] = {
    "bookworm": {
        "python": "3.11",
        "gcc": "12",
        "node": "18",
        "lua": "5.4",
        "java": "17",
        "php": "8.2",
        "r": "4.2",
        "octave": "7",
        "ghc": "9.0",
    },
    "trixie": {"python": "3.13", "gcc": "14"},
    # Debian 11: the last suite with Python 2 and Julia (both were dropped in 12). Its
    # images are built from a bullseye base whatever the configured suite is.
    "bullseye": {"python": "3.9", "gcc": "10", "python2": "2.7", "julia": "1.5"},
}
#: Suites whose base image is built on demand for the recipes that name them.
LEGACY_SUITE = "bullseye"


class UnsupportedSuite(ValueError):
    """The configured Debian suite has no entry in `SUITE_VERSIONS`."""


def suite_versions(suite: str) -> Mapping[str, str]:
    try:
        return SUITE_VERSIONS[suite]
    except KeyError:
        known = ", ".join(sorted(SUITE_VERSIONS))
        raise UnsupportedSuite(
            f"Debian suite {suite!r} is not supported by the image recipes (known: {known})"
        ) from None


def short_hash(data: Any) -> str:
    """A stable 16-hex-digit digest of JSON-able data (key order does not matter)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# -- the base image -------------------------------------------------------------------

#: Keep documentation, manuals and translations out of every image: they are a large share
#: of a Debian install and nobody reads them inside a sandbox. Copyright files stay, as
#: Debian's licences ask.
DPKG_NODOC = """\
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
"""

#: Recommends would pull in e.g. a Tk GUI stack and ghostscript with matplotlib.
APT_NO_RECOMMENDS = """\
APT::Install-Recommends "false";
APT::Install-Suggests "false";
"""


def apt_sources(suite: str, mirror: str) -> str:
    """The sources.list of the base image: the suite, its updates and security updates.

    Security updates matter for a machine that runs untrusted code. The security archive is
    assumed to live next to the mirror (``<mirror>-security``), as on deb.debian.org.
    """
    mirror = mirror.rstrip("/")
    lines = [f"deb {mirror} {suite} main"]
    if suite not in ("sid", "unstable"):
        lines.append(f"deb {mirror} {suite}-updates main")
        lines.append(f"deb {mirror}-security {suite}-security main")
    return "\n".join(lines) + "\n"


@attrs.frozen
class BaseRecipe:
    """The debootstrap rootfs every kernel image starts from."""

    suite: str
    mirror: str
    #: Added to debootstrap's minbase. python3 is there because the kernel runner (bind
    #: mounted at run time) is a standard-library Python program and runs in every image;
    #: python3-minimal alone lacks much of the standard library (asyncio, pty helpers...).
    include: tuple[str, ...] = (
        "python3-minimal",
        "libpython3-stdlib",
        "ca-certificates",
    )
    variant: str = "minbase"

    @property
    def ref(self) -> str:
        return f"{BASE_REPOSITORY}:{self.suite}"

    @property
    def sources_list(self) -> str:
        return apt_sources(self.suite, self.mirror)

    def recipe_hash(self) -> str:
        return short_hash(
            {
                "builder": BUILDER_REVISION,
                "suite": self.suite,
                "mirror": self.mirror,
                "include": sorted(self.include),
                "variant": self.variant,
                "sources": self.sources_list,
                "dpkg": DPKG_NODOC,
                "apt": APT_NO_RECOMMENDS,
            }
        )

    def labels(self) -> dict[str, str]:
        return {
            LABEL_KIND: "base",
            LABEL_SUITE: self.suite,
            LABEL_RECIPE_HASH: self.recipe_hash(),
        }


# -- language images ------------------------------------------------------------------


@attrs.frozen
class LangRecipe:
    """A kernel image for one language: a Dockerfile body on top of the base image."""

    #: The runner's language name (``crucible.lang``), also the image repository suffix.
    lang: str
    #: The image tag: the version of the language's tool chain (``3.11``, ``12``...).
    tag: str
    #: Debian packages installed with apt (never pip: reproducible, and no PyPI at run time).
    packages: tuple[str, ...]
    #: ``lang`` values of the API that resolve to this image.
    aliases: tuple[str, ...]
    #: spec 9 limits (``ai.backend.maxcores`` / ``maxmem`` / ``timeout``).
    max_cores: int
    max_mem: str
    timeout: int
    features: tuple[str, ...] = DEFAULT_FEATURES
    #: A command run in the built image whose output must equal ``tag``.
    version_command: tuple[str, ...] = ()
    #: Optional spec 9 labels, e.g. ``ai.backend.envs.corecount``, as (name, value) pairs.
    extra_labels: tuple[tuple[str, str], ...] = ()
    #: The Debian suite of the base image; ``None``: the configured suite.
    suite: str | None = None
    #: Pinned ``name==version`` requirements installed with pip after apt, only for what
    #: Debian does not package (TensorFlow). Empty for every other image.
    pip_packages: tuple[str, ...] = ()
    #: Extra environment variables of the image, as (name, value) pairs.
    env: tuple[tuple[str, str], ...] = ()
    #: Shell commands run before apt-get, in the same layer.
    setup: tuple[str, ...] = ()

    @property
    def repository(self) -> str:
        return KERNEL_REPOSITORY_PREFIX + self.lang

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"

    def labels(self) -> dict[str, str]:
        """Labels written in the Dockerfile (the hash labels are added by the builder)."""
        return {
            "ai.backend.maxcores": str(self.max_cores),
            "ai.backend.maxmem": self.max_mem,
            "ai.backend.timeout": str(self.timeout),
            "ai.backend.mode": "query",
            # spec 9: this era's agent split on whitespace, the docs say commas; we write
            # spaces, and readers accept both.
            "ai.backend.features": " ".join(self.features),
            "ai.backend.version": "1",
            LABEL_KIND: "kernel",
            LABEL_LANG: self.lang,
            LABEL_ALIASES: ",".join(self.aliases),
            **dict(self.extra_labels),
        }

    def dockerfile(self, base_ref: str) -> str:
        """The Dockerfile, built with an empty context (everything comes from apt)."""
        env = " ".join(f"{key}={value}" for key, value in (*BASE_ENVIRONMENT.items(), *self.env))
        labels = " \\\n      ".join(
            f"{key}={json.dumps(value)}" for key, value in sorted(self.labels().items())
        )
        lines = [
            f"FROM {base_ref}",
            # The user comes first: these layers are the same for every language, so Docker
            # shares them between images.
            f"RUN groupadd --gid {WORK_UID} {WORK_USER} \\\n"
            f" && useradd --uid {WORK_UID} --gid {WORK_UID} --home-dir {WORK_HOME}"
            f" --create-home --shell /bin/bash {WORK_USER}",
            "ARG DEBIAN_FRONTEND=noninteractive",
            # One layer: update, install and clean together, or the lists stay in a layer.
            "RUN "
            + "".join(f"{command} \\\n && " for command in self.setup)
            + "apt-get update \\\n"
            " && apt-get install -y --no-install-recommends "
            + " ".join(self.packages)
            + " \\\n && apt-get clean \\\n && rm -rf /var/lib/apt/lists/*",
            *self._pip_lines(),
            f"ENV {env}",
            f"WORKDIR {WORK_HOME}",
            f"USER {WORK_USER}",
            # No CMD on purpose: the agent starts the bind-mounted runner explicitly.
            f"LABEL {labels}",
        ]
        return "\n".join(lines) + "\n"

    def _pip_lines(self) -> list[str]:
        if not self.pip_packages:
            return []
        # Debian's pip refuses to touch the system Python (PEP 668) unless told; the
        # packages go to /usr/local, beside (not over) Debian's, and pip's cache is not kept.
        # The builder puts the host's CA bundle in the build context (`PIP_CA_FILE`): a
        # TLS-inspecting proxy between the build and PyPI is then trusted as the host
        # trusts it. The bundle holds public certificates only.
        return [
            f"COPY {PIP_CA_FILE} /tmp/{PIP_CA_FILE}",
            # The variable, not --break-system-packages: pip before 23 (bullseye's) has
            # no such option, and no PEP 668 marker to override either.
            f"RUN PIP_CERT=/tmp/{PIP_CA_FILE} PIP_BREAK_SYSTEM_PACKAGES=1"
            " python3 -m pip install --no-cache-dir " + " ".join(self.pip_packages),
        ]

    def recipe_hash(self, base_ref: str, base_hash: str) -> str:
        return short_hash(
            {
                "builder": BUILDER_REVISION,
                "dockerfile": self.dockerfile(base_ref),
                "base": base_hash,
                "version_command": list(self.version_command),
            }
        )


def _aliases(lang: str, version: str, *extra: str) -> tuple[str, ...]:
    major = version.split(".")[0]
    names = [lang, f"{lang}:latest", f"{lang}:{major}", f"{lang}:{version}", *extra]
    # dict keeps the first occurrence: "python:3" and "python:3.11" may coincide for gcc.
    return tuple(dict.fromkeys(names))


def lang_recipes(suite: str) -> dict[str, LangRecipe]:
    """Every language recipe for a Debian suite, by language name.

    A recipe whose tool chain the suite lacks (no version in `SUITE_VERSIONS`) is left
    out; Python 2 and Julia always come from `LEGACY_SUITE`.
    """
    versions = suite_versions(suite)
    python = versions["python"]
    gcc = versions["gcc"]
    recipes = [
        LangRecipe(
            lang="python",
            tag=python,
            # munkres and unicodedata2 satisfy alternatives in python3-fonttools' (a
            # matplotlib dependency) Depends whose first choices would pull in SciPy, its
            # compiler Pythran and python3-dev: ~600 MB that nobody asked for.
            packages=(
                "python3",
                "python3-numpy",
                "python3-matplotlib",
                "python3-munkres",
                "python3-unicodedata2",
            ),
            aliases=_aliases("python", python, "python3"),
            max_cores=4,
            max_mem="2g",
            # 30 s per execution: an interactive sandbox, not a batch farm. Agents may
            # enforce less (spec 9: labels are defaults/maximums).
            timeout=30,
            # NumPy's BLAS would otherwise start a thread per host core, whatever the
            # container's CPU quota.
            extra_labels=(("ai.backend.envs.corecount", "OPENBLAS_NUM_THREADS,OMP_NUM_THREADS"),),
            version_command=(
                "python3",
                "-c",
                "import sys; print('%d.%d' % sys.version_info[:2])",
            ),
        ),
        LangRecipe(
            lang="c",
            tag=gcc,
            packages=("gcc", "libc6-dev", "make"),
            aliases=_aliases("c", gcc, "gcc"),
            max_cores=4,
            max_mem="1g",
            timeout=30,
            version_command=("gcc", "-dumpversion"),
        ),
        LangRecipe(
            lang="cpp",
            tag=gcc,
            packages=("g++", "libc6-dev", "make"),
            aliases=_aliases("cpp", gcc, "c++", "g++"),
            max_cores=4,
            max_mem="1g",
            timeout=30,
            version_command=("g++", "-dumpversion"),
        ),
        *_more_recipes(suite, versions),
        *_legacy_recipes(suite),
    ]
    return {recipe.lang: recipe for recipe in recipes}


#: Thread-count variables of OpenBLAS/OpenMP, set to the session's cores (spec 9).
BLAS_THREADS = "OPENBLAS_NUM_THREADS,OMP_NUM_THREADS"


def _more_recipes(suite: str, versions: Mapping[str, str]) -> list[LangRecipe]:
    """The languages of the configured suite beyond python, c and cpp."""
    recipes: list[LangRecipe] = []
    python = versions["python"]
    if "node" in versions:
        recipes.append(
            LangRecipe(
                lang="nodejs",
                tag=versions["node"],
                packages=("nodejs",),
                aliases=_aliases("nodejs", versions["node"], "node", "javascript"),
                # Node colours console.log() output on a terminal (the runner's pty);
                # API clients want plain text.
                env=(("NODE_DISABLE_COLORS", "1"),),
                max_cores=4,
                max_mem="1g",
                timeout=30,
                version_command=("node", "-p", "process.versions.node.split('.')[0]"),
            )
        )
    if "lua" in versions:
        recipes.append(
            LangRecipe(
                lang="lua",
                tag=versions["lua"],
                packages=("lua5.4",),
                aliases=_aliases("lua", versions["lua"]),
                max_cores=2,
                max_mem="512m",
                timeout=30,
                version_command=("lua5.4", "-e", "print((_VERSION:gsub('Lua ', '')))"),
            )
        )
    if "java" in versions:
        recipes.append(
            LangRecipe(
                lang="java",
                tag=versions["java"],
                packages=(f"openjdk-{versions['java']}-jdk-headless",),
                # The JDK's postinst links its man pages, whose folder DPKG_NODOC removed.
                setup=("mkdir -p /usr/share/man/man1",),
                aliases=_aliases("java", versions["java"], "openjdk"),
                max_cores=4,
                max_mem="2g",
                # The JVM and javac start slowly; a cold compile-and-run takes seconds.
                timeout=60,
                # The JVM sizes its GC and JIT thread pools from the host's cores.
                extra_labels=(("ai.backend.envs.corecount", "JAVA_CPU_COUNT"),),
                version_command=(
                    "sh",
                    "-c",
                    "java -version 2>&1 | sed -n '1s/^[^\"]*\"\\([0-9]*\\).*/\\1/p'",
                ),
            )
        )
    if "php" in versions:
        recipes.append(
            LangRecipe(
                lang="php",
                tag=versions["php"],
                packages=("php-cli",),
                aliases=_aliases("php", versions["php"]),
                max_cores=2,
                max_mem="512m",
                timeout=30,
                version_command=("php", "-r", "echo PHP_MAJOR_VERSION . '.' . PHP_MINOR_VERSION;"),
            )
        )
    if "r" in versions:
        recipes.append(
            LangRecipe(
                lang="r",
                tag=versions["r"],
                packages=("r-base-core",),
                aliases=_aliases("r", versions["r"], "R"),
                max_cores=4,
                max_mem="2g",
                timeout=60,
                extra_labels=(("ai.backend.envs.corecount", BLAS_THREADS),),
                version_command=(
                    "Rscript",
                    "-e",
                    "cat(R.version$major, strsplit(R.version$minor, '.', fixed=TRUE)[[1]][1],"
                    " sep='.')",
                ),
            )
        )
    if "octave" in versions:
        recipes.append(
            LangRecipe(
                lang="octave",
                tag=versions["octave"],
                packages=("octave",),
                aliases=_aliases("octave", versions["octave"], "matlab"),
                max_cores=4,
                max_mem="2g",
                timeout=60,
                extra_labels=(("ai.backend.envs.corecount", BLAS_THREADS),),
                version_command=(
                    "octave-cli",
                    "--norc",
                    "--quiet",
                    "--eval",
                    "v = strsplit(OCTAVE_VERSION, '.'); printf('%s\\n', v{1})",
                ),
            )
        )
    if "ghc" in versions:
        recipes.append(
            LangRecipe(
                lang="haskell",
                tag=versions["ghc"],
                packages=("ghc",),
                aliases=_aliases("haskell", versions["ghc"], "ghc"),
                max_cores=4,
                max_mem="2g",
                # GHC compiles slowly; runghc of a snippet takes a few seconds.
                timeout=60,
                version_command=("sh", "-c", "ghc --numeric-version | cut -d. -f1,2"),
            )
        )
    # NumPy, pandas, scikit-learn, matplotlib and PyTorch (a CPU build) come from Debian;
    # TensorFlow is not packaged by Debian, so its CPU wheel comes from PyPI, pinned to the
    # last release line that accepts Debian's NumPy 1.x (Keras 2 ships with it).
    if suite == "bookworm":
        recipes.append(
            LangRecipe(
                lang="python-ml",
                tag=python,
                packages=(
                    "python3",
                    "python3-pip",
                    "python3-numpy",
                    "python3-pandas",
                    "python3-sklearn",
                    "python3-matplotlib",
                    "python3-munkres",
                    "python3-unicodedata2",
                    "python3-torch",
                ),
                pip_packages=("tensorflow-cpu==2.15.1",),
                aliases=(
                    *_aliases("python-ml", python),
                    *_aliases("python-tensorflow", python),
                    *_aliases("python-pytorch", python),
                ),
                max_cores=4,
                max_mem="4g",
                # Importing TensorFlow alone takes seconds.
                timeout=120,
                env=(("TF_CPP_MIN_LOG_LEVEL", "2"),),
                extra_labels=(
                    (
                        "ai.backend.envs.corecount",
                        "OPENBLAS_NUM_THREADS,OMP_NUM_THREADS,TF_NUM_INTRAOP_THREADS",
                    ),
                ),
                version_command=(
                    "python3",
                    "-c",
                    "import sys; print('%d.%d' % sys.version_info[:2])",
                ),
            )
        )
    return recipes


def _legacy_recipes(suite: str) -> list[LangRecipe]:
    """Python 2, Julia and Caffe/MXNet, from the last Debian suite that ships them."""
    versions = SUITE_VERSIONS[LEGACY_SUITE]
    python = versions["python"]
    return [
        # Caffe (CPU_ONLY) is packaged by Debian up to bullseye only; MXNet never was,
        # and its last release (1.9.1, the project is retired) needs NumPy < 1.24: both
        # fit bullseye's Python 3.9 and NumPy 1.19, and nothing newer.
        LangRecipe(
            lang="python-dl",
            tag=python,
            packages=("python3", "python3-pip", "python3-numpy", "python3-caffe"),
            pip_packages=("mxnet==1.9.1", "graphviz==0.8.4"),
            aliases=(
                *_aliases("python-dl", python),
                *_aliases("python-caffe", python),
                *_aliases("python-mxnet", python),
            ),
            max_cores=4,
            max_mem="2g",
            timeout=60,
            suite=LEGACY_SUITE,
            extra_labels=(
                ("ai.backend.envs.corecount", f"{BLAS_THREADS},MXNET_CPU_WORKER_NTHREADS"),
            ),
            version_command=("python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"),
        ),
        LangRecipe(
            lang="python2",
            tag=versions["python2"],
            packages=("python2",),
            aliases=_aliases("python2", versions["python2"]),
            max_cores=2,
            max_mem="1g",
            timeout=30,
            suite=LEGACY_SUITE,
            version_command=("python2", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"),
        ),
        LangRecipe(
            lang="julia",
            tag=versions["julia"],
            packages=("julia",),
            aliases=_aliases("julia", versions["julia"]),
            max_cores=4,
            max_mem="2g",
            # Julia compiles on first use: even a small snippet takes a few seconds.
            timeout=60,
            suite=LEGACY_SUITE,
            extra_labels=(("ai.backend.envs.corecount", "JULIA_NUM_THREADS,OPENBLAS_NUM_THREADS"),),
            version_command=(
                "julia",
                "--startup-file=no",
                "-e",
                'print(VERSION.major, ".", VERSION.minor)',
            ),
        ),
    ]
