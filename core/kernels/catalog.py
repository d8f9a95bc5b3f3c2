"""The image catalogue: resolve the API's ``lang`` (spec 4.2: ``name[:tag]``) to an image.

Pure functions over ``(ref, labels)`` pairs, so the manager can resolve against the images
agents report in their heartbeats without touching Docker; `ImageInfo` is one local image
as the agent's Docker driver and ``crucible images list`` read it.

Resolution order (the first rule that matches wins):

1. ``lang`` is an image reference (``crucible/kernel-python:3.11``);
2. ``lang`` is one of an image's ``crucible.aliases`` (``python``, ``python3``,
   ``python:3.11``...);
3. ``lang`` is an image repository without a tag (``crucible/kernel-python``);
4. ``lang`` is ``name:tag`` where ``name`` is an image's ``crucible.lang`` or an untagged
   alias, and ``tag`` is ``latest``, the image's tag, or a dotted prefix of it
   (``python:3`` matches ``3.11``; ``python:3.1`` does not).

Where several images match one rule (two Python versions both aliased ``python``), the
highest version tag wins, so installing a newer image moves ``python`` forward.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import attrs

from crucible.errors import ImageNotFound
from crucible.kernels.contract import LABEL_ALIASES, LABEL_KIND, LABEL_LANG

#: ``(image reference, labels)``, as ``docker image inspect`` or a heartbeat gives them.
ImageEntry = tuple[str, Mapping[str, str]]


@attrs.frozen
class ImageInfo:
    """One local image: its id, the references it goes by, its labels.

    `size` (bytes) and `created` (Docker's RFC 3339 time) are filled where the listing
    that made it carries them (``crucible images list``), else 0 and ``""``.
    """

    id: str
    tags: tuple[str, ...]
    labels: Mapping[str, str]
    size: int = 0
    created: str = ""

    @property
    def kind(self) -> str:
        """`KIND_BASE` or `KIND_KERNEL` for Crucible's images, ``""`` for others."""
        return self.labels.get(LABEL_KIND, "")


class UnknownLang(ImageNotFound):
    """No installed image answers to this ``lang``; an ``image-not-found`` problem (404)."""

    def __init__(self, lang: str, known: Iterable[str] = ()) -> None:
        self.lang = lang
        self.known = tuple(sorted(set(known)))
        hint = f" (available: {', '.join(self.known)})" if self.known else " (no images)"
        super().__init__(f"No kernel image for lang {lang!r}{hint}.")


def aliases_of(labels: Mapping[str, str]) -> tuple[str, ...]:
    """The ``crucible.aliases`` label as a tuple (commas, and whitespace, separate names)."""
    return tuple(name for name in re.split(r"[,\s]+", labels.get(LABEL_ALIASES, "")) if name)


def split_ref(ref: str) -> tuple[str, str]:
    """``repo:tag`` → (repo, tag); a colon inside a registry host (``host:5000/x``) is not a
    tag separator. A ref without a tag gets ``latest``, as Docker does."""
    repo, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, "latest"
    return repo, tag


def version_key(tag: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key for tags: numeric parts compare as numbers (``3.11`` > ``3.9``)."""
    parts = re.split(r"[.\-_+]", tag)
    return tuple((1, int(part)) if part.isdigit() else (0, part) for part in parts)


def _tag_matches(wanted: str, tag: str) -> bool:
    return wanted in ("latest", tag) or tag.startswith(wanted + ".")


def _best(refs: Iterable[str]) -> str | None:
    candidates = sorted(set(refs), key=lambda ref: (version_key(split_ref(ref)[1]), ref))
    return candidates[-1] if candidates else None


def resolve_lang(lang: str, images: Iterable[ImageEntry]) -> str:
    """The reference of the image ``lang`` names; `UnknownLang` when there is none."""
    entries = list(images)
    wanted = lang.strip()
    if not wanted:
        raise UnknownLang(lang, _known(entries))

    for ref, _labels in entries:
        if ref == wanted:
            return ref

    by_alias = _best(ref for ref, labels in entries if wanted in aliases_of(labels))
    if by_alias is not None:
        return by_alias

    if ":" not in wanted:
        by_repo = _best(ref for ref, _labels in entries if split_ref(ref)[0] == wanted)
        if by_repo is not None:
            return by_repo

    name, tag = split_ref(wanted)
    by_name = _best(
        ref
        for ref, labels in entries
        if _answers_to(name, labels) and _tag_matches(tag, split_ref(ref)[1])
    )
    if by_name is not None:
        return by_name
    raise UnknownLang(lang, _known(entries))


def _answers_to(name: str, labels: Mapping[str, str]) -> bool:
    if labels.get(LABEL_LANG) == name:
        return True
    return name in (alias for alias in aliases_of(labels) if ":" not in alias)


def _known(entries: Iterable[ImageEntry]) -> list[str]:
    names: list[str] = []
    for _ref, labels in entries:
        names.extend(aliases_of(labels))
    return names
