"""The local Crucible images, as the ``docker`` CLI shows them: labels, ids, listings."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from crucible.agent.images.commands import BuildError, Progress, capture
from crucible.kernels.catalog import ImageInfo
from crucible.kernels.contract import KIND_KERNEL, LABEL_KIND, LABEL_RECIPE_HASH

log = logging.getLogger(__name__)

# Every call here is one ``docker image`` command that may take `timeout` seconds
# (``images.inspect_timeout``).


async def image_labels(ref: str, *, timeout: float) -> dict[str, str] | None:
    """The labels of a local image, or None when there is no such image."""
    info = await inspect([ref], timeout=timeout)
    if not info:
        return None
    return dict((info[0].get("Config") or {}).get("Labels") or {})


async def is_current(ref: str, recipe_hash: str, *, timeout: float) -> bool:
    """Whether the local image `ref` was built from the recipe with this hash."""
    labels = await image_labels(ref, timeout=timeout)
    return labels is not None and labels.get(LABEL_RECIPE_HASH) == recipe_hash


async def image_id(ref: str, *, timeout: float) -> str | None:
    info = await inspect([ref], timeout=timeout)
    return str(info[0]["Id"]) if info else None


async def inspect(refs: Sequence[str], *, timeout: float) -> list[dict[str, Any]]:
    if not refs:
        return []
    result = await capture(["docker", "image", "inspect", *refs], timeout=timeout)
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace")
        # One missing ref makes the whole call fail, but it still prints the others.
        if "No such image" not in stderr:
            raise BuildError(f"docker image inspect failed: {stderr.strip()}")
    try:
        data = json.loads(result.stdout or b"[]")
    except ValueError as exc:
        raise BuildError(f"docker image inspect printed no JSON: {exc}") from exc
    return list(data)


async def list_images(*, timeout: float, include_base: bool = False) -> list[ImageInfo]:
    """The local Crucible images: kernel images, and the base images when asked."""
    result = await capture(
        [
            "docker", "image", "ls",
            "--filter", f"label={LABEL_KIND}",
            "--format", "{{.ID}}",
        ],
        timeout=timeout,
    )  # fmt: skip
    if result.returncode != 0:
        raise BuildError(f"docker image ls failed: {result.stderr.decode(errors='replace')}")
    ids = list(dict.fromkeys(result.stdout.decode().split()))
    images = [
        ImageInfo(
            id=str(item["Id"]),
            tags=tuple(item.get("RepoTags") or ()),
            labels=dict((item.get("Config") or {}).get("Labels") or {}),
            size=int(item.get("Size", 0)),
            created=str(item.get("Created", "")),
        )
        for item in await inspect(ids, timeout=timeout)
    ]
    return [image for image in images if include_base or image.kind == KIND_KERNEL]


async def remove_replaced(
    old_id: str | None, ref: str, progress: Progress, *, timeout: float
) -> None:
    """Drop the image a rebuild untagged, unless something (a container) still uses it."""
    if old_id is None or old_id == await image_id(ref, timeout=timeout):
        return
    result = await capture(["docker", "image", "rm", old_id], timeout=timeout)
    if result.returncode == 0:
        progress(f"{ref}: removed the replaced image {old_id[:19]}")
    else:
        log.info("kept the replaced image %s: %s", old_id, result.stderr.decode().strip())

