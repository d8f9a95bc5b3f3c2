"""Kernel image recipes, as data: the base image's and each language's.

A recipe is everything that decides what an image contains. Its hash is stored in the
image's ``crucible.recipe-hash`` label, so the builder can tell an up-to-date image from a
stale one by looking at labels alone (no build needed to find out).

The language recipes are made from the language definitions
(`crucible.agent.runner.languages`), which also give the runner its recipes, and the
Debian suite's tool-chain versions (`crucible.agent.images.suites`).

This module is pure: no Docker, no I/O. The builder (`crucible.agent.images.builder`)
turns recipes into images.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import attrs

from crucible.agent.images.suites import (
    APT_NO_RECOMMENDS,
    DPKG_NODOC,
    apt_sources,
    suite_versions,
)
from crucible.agent.runner.languages import LANGUAGES, Language
from crucible.kernels.contract import (
    BASE_ENVIRONMENT,
    KIND_BASE,
    KIND_KERNEL,
    LABEL_ALIASES,
    LABEL_CORECOUNT_ENVS,
    LABEL_FEATURES,
    LABEL_KIND,
    LABEL_LANG,
    LABEL_MAX_CORES,
    LABEL_MAX_MEM,
    LABEL_MODE,
    LABEL_RECIPE_HASH,
    LABEL_SUITE,
    LABEL_TIMEOUT,
    LABEL_VERSION,
    WORK_DIR,
    WORK_GID,
    WORK_UID,
    WORK_USER,
)
from crucible.kernels.service_ports import (
    LABEL_SERVICE_PORTS,
    ServicePort,
    format_service_ports,
)

#: Bump when the builder's *handling* of a recipe changes in a way that alters the image
#: (e.g. how the rootfs is trimmed), so that existing images are seen as stale.
BUILDER_REVISION = 1

BASE_REPOSITORY = "crucible/base"
KERNEL_REPOSITORY_PREFIX = "crucible/kernel-"

#: The CA bundle file the builder adds to the build context of recipes with pip packages.
PIP_CA_FILE = "build-ca.pem"

#: Runtime features of every Crucible kernel: the runner implements them for all languages.
DEFAULT_FEATURES = ("batch", "query", "uid-match", "user-input")


def short_hash(data: Any) -> str:
    """A stable 16-hex-digit digest of JSON-able data (key order does not matter)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


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
            LABEL_KIND: KIND_BASE,
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
    #: spec 9 ``ai.backend.service-ports``: the apps the image offers (checked here, so
    #: a recipe with a bad declaration is refused before anything is built).
    service_ports: tuple[ServicePort, ...] = attrs.field(
        default=(), validator=lambda _i, _a, v: format_service_ports(v)
    )

    @property
    def repository(self) -> str:
        return KERNEL_REPOSITORY_PREFIX + self.lang

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"

    def labels(self) -> dict[str, str]:
        """Labels written in the Dockerfile (the hash labels are added by the builder)."""
        return {
            LABEL_MAX_CORES: str(self.max_cores),
            LABEL_MAX_MEM: self.max_mem,
            LABEL_TIMEOUT: str(self.timeout),
            LABEL_MODE: "query",
            # spec 9: this era's agent split on whitespace, the docs say commas; we write
            # spaces, and readers accept both.
            LABEL_FEATURES: " ".join(self.features),
            LABEL_VERSION: "1",
            LABEL_KIND: KIND_KERNEL,
            LABEL_LANG: self.lang,
            LABEL_ALIASES: ",".join(self.aliases),
            **(
                {LABEL_SERVICE_PORTS: format_service_ports(self.service_ports)}
                if self.service_ports
                else {}
            ),
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
            f"RUN groupadd --gid {WORK_GID} {WORK_USER} \\\n"
            f" && useradd --uid {WORK_UID} --gid {WORK_GID} --home-dir {WORK_DIR}"
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
            f"WORKDIR {WORK_DIR}",
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


def image_aliases(language: Language, version: str) -> tuple[str, ...]:
    """The ``lang`` names of `language`'s image at tool-chain `version`: its name and
    `Language.also_named`, each bare and with ``:latest``, ``:MAJOR`` and ``:VERSION``,
    then its plain `Language.aliases`."""
    major = version.split(".")[0]
    tagged = [
        f"{name}{tag}"
        for name in (language.name, *language.also_named)
        for tag in ("", ":latest", f":{major}", f":{version}")
    ]
    # dict keeps the first occurrence: "c:12" is both the major and the version tag.
    return tuple(dict.fromkeys([*tagged, *language.aliases]))


def lang_recipe(language: Language, suite: str) -> LangRecipe | None:
    """The image recipe of `language` for the configured Debian `suite`; ``None`` when the
    suite has no such image (its tool chain is missing there, or `Language.only_suites`)."""
    if language.only_suites and suite not in language.only_suites:
        return None
    versions = suite_versions(language.suite or suite)
    version = versions.get(language.toolchain or language.name)
    if version is None:
        return None
    return LangRecipe(
        lang=language.name,
        tag=version,
        packages=tuple(package.format(version=version) for package in language.packages),
        aliases=image_aliases(language, version),
        max_cores=language.limits.cores,
        max_mem=language.limits.memory,
        timeout=language.limits.timeout,
        version_command=language.version_command,
        extra_labels=((LABEL_CORECOUNT_ENVS, language.corecount),) if language.corecount else (),
        suite=language.suite,
        pip_packages=language.pip_packages,
        env=language.env,
        setup=language.setup,
        # ServicePortError (a ValueError) on a bad declaration: refused at build time.
        service_ports=tuple(
            ServicePort(service.name, service.protocol, service.port)
            for service in language.recipe.services
        ),
    )


def lang_recipes(suite: str) -> dict[str, LangRecipe]:
    """Every language recipe for a Debian suite, by language name, in build order.

    A language whose tool chain the suite lacks (no version in `SUITE_VERSIONS`) is left
    out; those whose `Language.suite` is fixed (Python 2, Julia: bullseye) come from that
    suite whatever the configured one. `UnsupportedSuite` for an unknown suite.
    """
    suite_versions(suite)
    recipes = (lang_recipe(language, suite) for language in LANGUAGES)
    return {recipe.lang: recipe for recipe in recipes if recipe is not None}
