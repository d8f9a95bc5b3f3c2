"""Which image a new session runs: ``lang`` resolved against the images alive agents
report (`crucible.kernels.catalog` does the matching)."""

from __future__ import annotations

from crucible.db.pool import Executor
from crucible.db.queries import agents
from crucible.kernels.catalog import resolve_lang

#: ``(image ref, its labels)``, one entry per ref, sorted by ref.
Catalog = list[tuple[str, dict[str, str]]]


async def image_catalog(ex: Executor) -> Catalog:
    """Every image some alive agent has, with the labels of the first report of it."""
    catalog: dict[str, dict[str, str]] = {}
    for images in await agents.alive_images(ex):
        for image in images:
            catalog.setdefault(str(image["ref"]), dict(image.get("labels") or {}))
    return sorted(catalog.items())


async def resolve_image(ex: Executor, lang: str) -> tuple[str, dict[str, str]]:
    """The image `lang` names, and its labels (`UnknownLang`: a 404 image-not-found)."""
    catalog = await image_catalog(ex)
    image = resolve_lang(lang, catalog)
    return image, dict(catalog)[image]
