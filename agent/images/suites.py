"""Debian suites: the tool chains each ships, its apt sources, the base rootfs's apt/dpkg.

Pure data and functions; `crucible.agent.images.recipes` and the base image builder
(`crucible.agent.images.base_image`) use them.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Versions of the tool chains each supported Debian suite ships. Image tags and aliases
#: such as ``python:3.11`` come from here (a language's `Image.toolchain` is the key);
#: the builder checks them against the built image (`LangRecipe.version_command`), so a
#: wrong entry fails the build instead of lying.
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
