"""A matplotlib backend for Crucible kernels: ``plt.show()`` becomes console media items.

Selected with ``MPLBACKEND=module://crucible_mpl_backend`` (set by the kernel runner).
Rendering is Agg's; `show` sends every open figure as an SVG media item through
`crucible_kernel` and closes it, like notebook inline backends do. Outside a kernel
(`crucible_kernel._emit` unset) `show` just closes the figures.
"""

from __future__ import annotations

from typing import Any

import crucible_kernel
from matplotlib._pylab_helpers import Gcf
from matplotlib.backend_bases import FigureManagerBase, _Backend
from matplotlib.backends.backend_agg import FigureCanvasAgg


class FigureCanvasCrucible(FigureCanvasAgg):  # type: ignore[misc]
    pass


class FigureManagerCrucible(FigureManagerBase):  # type: ignore[misc]
    def show(self) -> None:
        # `figure.show()` lands here.
        crucible_kernel.emit("media", crucible_kernel.figure_item(self.canvas.figure))


# `_Backend.export` fills the module-level names (FigureCanvas, show, ...) that every
# matplotlib 3.x pyplot looks up, whichever protocol version it speaks.
@_Backend.export
class _BackendCrucible(_Backend):  # type: ignore[misc]
    backend_version = "1"
    FigureCanvas = FigureCanvasCrucible
    FigureManager = FigureManagerCrucible

    @staticmethod
    def show(*args: Any, **kwargs: Any) -> None:
        for manager in Gcf.get_all_fig_managers():
            crucible_kernel.emit("media", crucible_kernel.figure_item(manager.canvas.figure))
        Gcf.destroy_all()
