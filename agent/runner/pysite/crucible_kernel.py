"""Rich output for user code in Crucible's Python kernels (``display(obj)``).

The kernel runner's Python child puts this module on ``sys.path`` and sets `_emit`;
`display` is also installed as a builtin there. Elsewhere (e.g. a subprocess started by
user code) `_emit` stays ``None`` and `display` falls back to printing ``repr(obj)``.

What `display` sends, first match wins:

* a matplotlib figure → ``["media", ["image/svg+xml", "<svg...>"]]`` (PNG data URI if
  SVG rendering fails);
* ``_repr_html_()`` → ``["html", fragment]``;
* ``_repr_svg_()`` → ``["media", ["image/svg+xml", ...]]``;
* ``_repr_png_()`` → ``["media", ["image/png", "data:image/png;base64,..."]]``;
* anything else → ``repr(obj)`` on stdout.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

_emit: Callable[[list[Any]], None] | None = None


def emit(kind: str, data: Any) -> bool:
    """Send one console item (``kind`` is ``media`` or ``html``); False outside a kernel."""
    if _emit is None:
        return False
    _emit([kind, data])
    return True


def _data_uri(mime: str, data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def figure_item(figure: Any) -> list[Any]:
    """A matplotlib figure as a media item: SVG, or a PNG data URI as a fallback."""
    try:
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", bbox_inches="tight")
        return ["image/svg+xml", buffer.getvalue()]
    except Exception:
        raw = io.BytesIO()
        figure.savefig(raw, format="png", bbox_inches="tight")
        return ["image/png", _data_uri("image/png", raw.getvalue())]


def _is_figure(obj: Any) -> bool:
    # Without importing matplotlib (slow) unless the object comes from it.
    return type(obj).__module__.startswith("matplotlib.") and hasattr(obj, "savefig")


def _item_for(obj: Any) -> list[Any] | None:
    if _is_figure(obj):
        return ["media", figure_item(obj)]
    for method, kind in (("_repr_html_", "html"), ("_repr_svg_", "svg"), ("_repr_png_", "png")):
        render = getattr(obj, method, None)
        if not callable(render):
            continue
        data = render()
        if data is None:
            continue
        if kind == "html":
            return ["html", str(data)]
        if kind == "svg":
            return ["media", ["image/svg+xml", str(data)]]
        return ["media", ["image/png", _data_uri("image/png", data)]]
    return None


def display(*objects: Any) -> None:
    """Show each object as rich output when it knows how, else print its repr."""
    for obj in objects:
        item = _item_for(obj) if _emit is not None else None
        if item is None or not emit(item[0], item[1]):
            print(repr(obj))
