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

WORK_USER = "work"
WORK_UID = 1000
WORK_HOME = "/home/work"

#: Runtime features of every Crucible kernel: the runner implements them for all languages.
DEFAULT_FEATURES = ("batch", "query", "uid-match", "user-input")

#: Versions of the tool chains each supported Debian suite ships. Image tags and aliases
#: such as ``python:3.11`` come from here; the builder checks them against the built image
#: (`LangRecipe.version_command`), so a wrong entry fails the build instead of lying.
SUITE_VERSIONS: Mapping[str, Mapping[str, str]] = {
    "bookworm": {"python": "3.11", "gcc": "12"},
    "trixie": {"python": "3.13", "gcc": "14"},
}


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
        env = " ".join(f"{key}={value}" for key, value in BASE_ENVIRONMENT.items())
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
            "RUN apt-get update \\\n"
            " && apt-get install -y --no-install-recommends "
            + " ".join(self.packages)
            + " \\\n && apt-get clean \\\n && rm -rf /var/lib/apt/lists/*",
            f"ENV {env}",
            f"WORKDIR {WORK_HOME}",
            f"USER {WORK_USER}",
            # No CMD on purpose: the agent starts the bind-mounted runner explicitly.
            f"LABEL {labels}",
        ]
        return "\n".join(lines) + "\n"

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
    """Every language recipe for a Debian suite, by language name."""
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
    ]
    return {recipe.lang: recipe for recipe in recipes}
